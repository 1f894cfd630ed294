/*
 * timm's VisionTransformer as the hub holds it (timm/vit_*): config.json
 * with `architecture`, `num_classes`, `global_pool`, `model_args`,
 * `pretrained_cfg` and `label_names`, and model.safetensors in timm's
 * tensor names. The architecture's name stands for what the tensors do not
 * show (heads, layernorm eps, activation, default pooling: vit/timm_archs.h,
 * generated from timm's registry); model_args overrides it; everything
 * else is read from the tensors present: class token, register tokens,
 * position embeddings with or without the prefix tokens, patch bias,
 * norm_pre, qkv bias, qk-norm, layer scale, final norm or fc_norm, the
 * map head, the classifier. A tensor this reading would not use is refused,
 * so a variant vit does not run is never run wrong. The preprocessing is
 * timm's eval transform as pretrained_cfg resolves it.
 *
 * Dimension legend: B batch, T tokens, D hidden size, R register tokens.
 */
#include "vit/vit_impl.h"

#include <math.h>
#include <string.h>

typedef struct {
    const char *name;
    int heads;
    float eps;
    vit__act act;
    const char *pool;
    const char *unsupported; /* why vit does not run it, or NULL */
} timm_arch;

static const timm_arch archs[] = {
#include "vit/timm_archs.h"
};

int vit__timm_config(json_t *cfg)
{
    return json_is_string(json_object_get(cfg, "architecture")) &&
           !json_object_get(cfg, "model_type") &&
           !json_object_get(cfg, "architectures");
}

/* ---- config.json ---- */

/* What the model is, once config.json and the tensors are read: the
 * config's parts; the class token (0 or 1), registers, whether the
 * positions cover the prefix tokens, qkv bias, qk-norm, layer scale, and
 * depth the tensors show. */
typedef struct {
    const char *path;
    json_t *cfg, *args, *pcfg;
    int cls, dist, R, pos_prefix, qkv_bias, qkn, ls, L;
} timm_read;

/* model_args keys: those read, and those whose effect the tensors show
 * (checked there) or that do not change an eval forward at the
 * configured size. Any other is refused: it may change the computation. */
static const char *const known_args[] = {
    "img_size", "patch_size", "in_chans", "num_classes", "global_pool",
    "embed_dim", "depth", "num_heads", "mlp_ratio", "qkv_bias", "qk_norm",
    "init_values", "class_token", "no_embed_class", "reg_tokens", "pre_norm",
    "final_norm", "fc_norm", "pool_include_prefix", "dynamic_img_size",
    "dynamic_img_pad", "weight_init", "fix_init", "act_layer", "proj_bias",
    "scale_attn_norm", "scale_mlp_norm", "pos_embed",
};

static vit_status check_args(timm_read *r, vit_error *err)
{
    const char *k;
    json_t *v;
    json_object_foreach(r->args, k, v) {
        size_t i = 0, n = sizeof known_args / sizeof *known_args;
        while (i < n && strcmp(k, known_args[i]) != 0)
            i++;
        if (i == n)
            return vit__fail(err, VIT_E_UNSUPPORTED,
                             "%s: model_args \"%s\" is not supported", r->path,
                             k);
    }
    const char *pe = json_string_value(json_object_get(r->args, "pos_embed"));
    if (pe && strcmp(pe, "learn") != 0)
        return vit__fail(err, VIT_E_UNSUPPORTED,
                         "%s: model_args pos_embed \"%s\" is not supported "
                         "(learned position embeddings are)",
                         r->path, pe);
    return VIT_OK;
}

/* timm's act_layer names (timm.layers.get_act_layer) that vit runs. */
static vit_status read_act(timm_read *r, vit__act *act, vit_error *err)
{
    json_t *a = json_object_get(r->args, "act_layer");
    if (!a || json_is_null(a))
        return VIT_OK;
    static const struct {
        const char *name;
        vit__act act;
    } acts[] = {{"gelu", VIT_ACT_GELU},
                {"gelu_tanh", VIT_ACT_GELU_TANH},
                {"quick_gelu", VIT_ACT_QUICK_GELU},
                {"silu", VIT_ACT_SILU},
                {"swish", VIT_ACT_SILU},
                {"relu", VIT_ACT_RELU},
                {"tanh", VIT_ACT_TANH}};
    const char *s = json_string_value(a);
    for (size_t i = 0; s && i < sizeof acts / sizeof *acts; i++)
        if (strcmp(s, acts[i].name) == 0) {
            *act = acts[i].act;
            return VIT_OK;
        }
    return vit__fail(err, VIT_E_UNSUPPORTED,
                     "%s: model_args act_layer %s%s%s is not supported",
                     r->path, s ? "\"" : "", s ? s : "(not a name)",
                     s ? "\"" : "");
}

/* global_pool as timm builds the model: model_args, else pretrained_cfg
 * (a default of the builder's), else the architecture's. The top level's
 * is for information only (timm does not read it). */
static vit_status read_pool(timm_read *r, const timm_arch *a, vit__timm *t,
                            vit_error *err)
{
    json_t *g = json_object_get(r->args, "global_pool");
    if (!json_is_string(g))
        g = json_object_get(r->pcfg, "global_pool");
    const char *pool = json_is_string(g) ? json_string_value(g) : a->pool;
    /* A distilled DeiT reads its two tokens, whatever the config says
     * (timm asserts it says token). */
    if (strcmp(a->pool, "distilled") == 0) {
        if (strcmp(pool, "token") != 0 && strcmp(pool, "distilled") != 0)
            return vit__fail(err, VIT_E_CONFIG,
                             "%s: a distilled DeiT pools its tokens; "
                             "global_pool \"%s\"",
                             r->path, pool);
        t->pool = VIT_TIMM_DISTILLED;
        return VIT_OK;
    }
    static const char *const pools[] = {"token", "avg", "max", "avgmax",
                                        "map"};
    for (int i = 0; i < 5; i++)
        if (strcmp(pool, pools[i]) == 0) {
            t->pool = i;
            return vit__cfg_bool(r->args, r->path, "pool_include_prefix", 0,
                                 &t->pool_prefix, err);
        }
    return vit__fail(err, VIT_E_UNSUPPORTED,
                     "%s: global_pool \"%s\" is not supported (token, avg, "
                     "max, avgmax and map are)",
                     r->path, pool);
}

/* num_classes as timm builds the model: model_args, else the top level's
 * (which timm copies into pretrained_cfg), else pretrained_cfg's, else
 * the head's rows (the architecture's default, which a checkpoint with
 * its head has). */
static vit_status read_classes(timm_read *r, vit__weights *w, vit__timm *t,
                               vit_error *err)
{
    json_t *const from[] = {r->args, r->cfg, r->pcfg};
    for (int i = 0; i < 3; i++)
        if (json_object_get(from[i], "num_classes"))
            return vit__cfg_int(from[i], r->path, "num_classes", 0, 0,
                                10000000, &t->num_classes, err);
    const vit__tensor *h = vit__weights_find(w, "head.weight");
    t->num_classes = h && h->ndim == 2 && h->shape[0] <= 10000000
                         ? (int)h->shape[0]
                         : 0;
    return VIT_OK;
}

/* label_names (or a legacy config's labels): a list, or an object of
 * ids; else LABEL_i as transformers names unnamed labels. */
static vit_status read_labels(timm_read *r, vit__timm *t, vit_error *err)
{
    int n = t->num_classes;
    json_t *names = json_object_get(r->cfg, "label_names");
    if (!names)
        names = json_object_get(r->pcfg, "label_names");
    if (!names)
        names = json_object_get(r->pcfg, "labels");
    if (names && !json_is_array(names) && !json_is_object(names))
        return vit__fail(err, VIT_E_CONFIG,
                         "%s: label_names must be a list or an object",
                         r->path);
    if (json_is_array(names) && json_array_size(names) != (size_t)n)
        return vit__fail(err, VIT_E_CONFIG,
                         "%s: %zu label_names for %d classes", r->path,
                         json_array_size(names), n);
    if (!(t->labels = calloc((size_t)n, sizeof *t->labels)))
        return vit__fail(err, VIT_E_NOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        char key[32];
        snprintf(key, sizeof key, "%d", i);
        json_t *v = json_is_array(names) ? json_array_get(names, i)
                                         : json_object_get(names, key);
        if (names && !json_is_string(v))
            return vit__fail(err, VIT_E_CONFIG,
                             "%s: label_names has no string for class %d",
                             r->path, i);
        char fallback[32];
        snprintf(fallback, sizeof fallback, "LABEL_%d", i);
        if (!(t->labels[i] = strdup(v ? json_string_value(v) : fallback)))
            return vit__fail(err, VIT_E_NOMEM, "out of memory");
    }
    return VIT_OK;
}

/* pretrained_cfg's size: input_size [C, H, W] (timm's default 3 x 224 x
 * 224). */
static vit_status read_input_size(timm_read *r, int C, int *h, int *w,
                                  vit_error *err)
{
    json_t *in = json_object_get(r->pcfg, "input_size");
    *h = *w = 224;
    if (!in || json_is_null(in))
        return VIT_OK;
    if (!json_is_array(in) || json_array_size(in) != 3 ||
        !json_is_integer(json_array_get(in, 0)) ||
        !json_is_integer(json_array_get(in, 1)) ||
        !json_is_integer(json_array_get(in, 2)))
        return vit__fail(err, VIT_E_CONFIG,
                         "%s: pretrained_cfg input_size must be [channels, "
                         "height, width]",
                         r->path);
    json_int_t c = json_integer_value(json_array_get(in, 0));
    json_int_t hh = json_integer_value(json_array_get(in, 1));
    json_int_t ww = json_integer_value(json_array_get(in, 2));
    if (c != C || hh < 1 || ww < 1 || hh > CFG_MAX_DIM || ww > CFG_MAX_DIM)
        return vit__fail(err, VIT_E_CONFIG,
                         "%s: pretrained_cfg input_size [%lld, %lld, %lld] "
                         "does not fit the model's %d channels",
                         r->path, (long long)c, (long long)hh, (long long)ww,
                         C);
    *h = (int)hh;
    *w = (int)ww;
    return VIT_OK;
}

/* ---- the eval transform ---- */

static vit_status read_triple(timm_read *r, const char *key,
                              const float *def, float *out, vit_error *err)
{
    json_t *a = json_object_get(r->pcfg, key);
    memcpy(out, def, 3 * sizeof *out);
    if (!a || json_is_null(a))
        return VIT_OK;
    if (!json_is_array(a) || json_array_size(a) != 3)
        return vit__fail(err, VIT_E_CONFIG,
                         "%s: pretrained_cfg %s must be three numbers",
                         r->path, key);
    for (int i = 0; i < 3; i++) {
        if (!json_is_number(json_array_get(a, i)))
            return vit__fail(err, VIT_E_CONFIG,
                             "%s: pretrained_cfg %s must be three numbers",
                             r->path, key);
        out[i] = (float)json_number_value(json_array_get(a, i));
    }
    return VIT_OK;
}

/* timm's transforms_imagenet_eval as resolve_data_config gives its
 * arguments: Resize to floor(size / crop_pct) — the shorter side
 * (crop_mode center, a square size) or both sides (squash) — then
 * CenterCrop to the size, ToTensor and Normalize, on a PIL image. */
static vit_status read_transform(timm_read *r, int H, int W,
                                 vit__processor *pr, vit_error *err)
{
    static const float mean[3] = {0.485f, 0.456f, 0.406f};
    static const float std[3] = {0.229f, 0.224f, 0.225f};
    img_preprocess_cfg *c = &pr->cfg;
    memset(pr, 0, sizeof *pr);
    vit_status st;
    if ((st = read_triple(r, "mean", mean, c->mean, err)) ||
        (st = read_triple(r, "std", std, c->std, err)))
        return st;
    /* resolve_data_config takes a falsy value as none. */
    json_t *pct = json_object_get(r->pcfg, "crop_pct");
    double crop_pct = 0.875;
    if (json_is_number(pct) && json_number_value(pct) != 0)
        crop_pct = json_number_value(pct);
    else if (pct && !json_is_null(pct) && !json_is_number(pct))
        return vit__fail(err, VIT_E_CONFIG,
                         "%s: pretrained_cfg crop_pct must be a number",
                         r->path);
    if (!(crop_pct > 0.05 && crop_pct <= 20))
        return vit__fail(err, VIT_E_CONFIG,
                         "%s: pretrained_cfg crop_pct %g is out of range",
                         r->path, crop_pct);
    const char *mode =
        json_string_value(json_object_get(r->pcfg, "crop_mode"));
    const char *interp =
        json_string_value(json_object_get(r->pcfg, "interpolation"));
    if (!mode || !*mode)
        mode = "center";
    if (!interp || !*interp)
        interp = "bicubic";
    static const struct {
        const char *name;
        img_filter f;
    } filters[] = {{"nearest", IMG_NEAREST}, {"bilinear", IMG_BILINEAR},
                   {"bicubic", IMG_BICUBIC}, {"box", IMG_BOX},
                   {"hamming", IMG_HAMMING}, {"lanczos", IMG_LANCZOS}};
    size_t i = 0, nf = sizeof filters / sizeof *filters;
    while (i < nf && strcmp(interp, filters[i].name) != 0)
        i++;
    if (i == nf)
        return vit__fail(err, VIT_E_UNSUPPORTED,
                         "%s: pretrained_cfg interpolation \"%s\" is not "
                         "supported (nearest, bilinear, bicubic, box, "
                         "hamming, lanczos are)",
                         r->path, interp);
    c->resample = filters[i].f;
    /* math.floor(x / crop_pct), in double as Python divides. */
    int sh = (int)floor(H / crop_pct), sw = (int)floor(W / crop_pct);
    if (strcmp(mode, "squash") == 0) {
        c->size_h = sh;
        c->size_w = sw;
    } else if (strcmp(mode, "center") == 0 && sh == sw) {
        c->shortest_edge = sh;
    } else if (strcmp(mode, "center") == 0 || strcmp(mode, "border") == 0) {
        /* ResizeKeepRatio: the short side to its target (center, a
         * non-square size), or the image inside the target (border),
         * padded with round(255 * mean) to the crop. */
        c->keep_h = sh;
        c->keep_w = sw;
        c->keep_longest = strcmp(mode, "border") == 0;
        static const double mean_d[3] = {0.485, 0.456, 0.406};
        json_t *jm = json_object_get(r->pcfg, "mean");
        for (int k = 0; c->keep_longest && k < 3; k++) {
            /* In Python's doubles, as the config holds them. */
            double m = jm ? json_number_value(json_array_get(jm, (size_t)k))
                          : mean_d[k];
            double f = rint(255.0 * m);
            c->pad[k] = (uint8_t)(f < 0 ? 0 : f > 255 ? 255 : f);
        }
    } else {
        return vit__fail(err, VIT_E_UNSUPPORTED,
                         "%s: pretrained_cfg crop_mode \"%s\" is not "
                         "supported (center, squash and border are)",
                         r->path, mode);
    }
    if (sh < 1 || sw < 1)
        return vit__fail(err, VIT_E_CONFIG,
                         "%s: pretrained_cfg resizes to nothing", r->path);
    c->do_resize = 1;
    c->do_center_crop = 1;
    c->crop_h = H;
    c->crop_w = W;
    c->do_rescale = 1;
    c->rescale_factor = 1.0f / 255.0f;
    c->do_normalize = 1;
    c->backend = IMG_BACKEND_PIL;
    c->tv_transforms = 1;
    return VIT_OK;
}

/* ---- tensors ---- */

static const float *get(vit__weights *w, const char *name, int ndim,
                        int64_t d0, int64_t d1, int64_t d2, vit_error *err)
{
    int64_t shape[3] = {d0, d1, d2};
    return vit__weights_get(w, name, ndim, shape, err);
}

static int has(const vit__weights *w, const char *name)
{
    return vit__weights_find(w, name) != NULL;
}

/* Whether `name` is a tensor the reading r binds: anything else is a
 * part of a variant vit does not run. */
static int expected(const timm_read *r, const vit__timm *t,
                    const vit__vision *v, const char *name)
{
    static const char *const top[] = {
        "patch_embed.proj.weight", "patch_embed.proj.bias", "pos_embed",
        "norm_pre.weight", "norm_pre.bias", "norm.weight", "norm.bias",
        "fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias"};
    static const char *const pool[] = {
        "attn_pool.latent", "attn_pool.q.weight", "attn_pool.q.bias",
        "attn_pool.kv.weight", "attn_pool.kv.bias", "attn_pool.proj.weight",
        "attn_pool.proj.bias", "attn_pool.norm.weight", "attn_pool.norm.bias",
        "attn_pool.mlp.fc1.weight", "attn_pool.mlp.fc1.bias",
        "attn_pool.mlp.fc2.weight", "attn_pool.mlp.fc2.bias"};
    static const char *const block[] = {
        "norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.proj.weight",
        "attn.proj.bias", "norm2.weight", "norm2.bias", "mlp.fc1.weight",
        "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"};
    for (size_t i = 0; i < sizeof top / sizeof *top; i++)
        if (strcmp(name, top[i]) == 0)
            return 1;
    for (size_t i = 0; t->pool == VIT_TIMM_MAP && i < sizeof pool / sizeof *pool;
         i++)
        if (strcmp(name, pool[i]) == 0)
            return 1;
    if ((r->cls && strcmp(name, "cls_token") == 0) ||
        (r->R && strcmp(name, "reg_token") == 0))
        return 1;
    if (t->pool == VIT_TIMM_DISTILLED &&
        (strcmp(name, "dist_token") == 0 ||
         strcmp(name, "head_dist.weight") == 0 ||
         strcmp(name, "head_dist.bias") == 0))
        return 1;
    int l, at = 0;
    if (sscanf(name, "blocks.%d.%n", &l, &at) != 1 || at == 0 || l < 0 ||
        l >= v->enc.L)
        return 0;
    const char *s = name + at;
    for (size_t i = 0; i < sizeof block / sizeof *block; i++)
        if (strcmp(s, block[i]) == 0)
            return 1;
    return (r->qkv_bias && strcmp(s, "attn.qkv.bias") == 0) ||
           (r->ls && (strcmp(s, "ls1.gamma") == 0 ||
                      strcmp(s, "ls2.gamma") == 0)) ||
           (r->qkn && (strcmp(s, "attn.q_norm.weight") == 0 ||
                       strcmp(s, "attn.q_norm.bias") == 0 ||
                       strcmp(s, "attn.k_norm.weight") == 0 ||
                       strcmp(s, "attn.k_norm.bias") == 0));
}

/* The structure the tensors show: patch size and width, prefix tokens,
 * depth, MLP width and the per-block options. */
static vit_status read_tensors(timm_read *r, vit__weights *w, vit__vision *v,
                               vit_error *err)
{
    const vit__tensor *pe = vit__weights_find(w, "patch_embed.proj.weight");
    if (!pe || pe->ndim != 4)
        return vit__fail(err, VIT_E_CHECKPOINT,
                         "checkpoint has no 4-d tensor "
                         "'patch_embed.proj.weight'");
    if (pe->shape[2] != pe->shape[3])
        return vit__fail(err, VIT_E_UNSUPPORTED,
                         "non-square patches (%lldx%lld)",
                         (long long)pe->shape[2], (long long)pe->shape[3]);
    if (pe->shape[0] < 1 || pe->shape[1] < 1 || pe->shape[2] < 1)
        return vit__fail(err, VIT_E_CHECKPOINT,
                         "'patch_embed.proj.weight' has an empty dimension");
    if (pe->shape[0] > CFG_MAX_DIM || pe->shape[1] > 64 ||
        pe->shape[2] > 4096 ||
        pe->shape[1] * pe->shape[2] * pe->shape[2] > CFG_MAX_DIM * 16)
        return vit__fail(err, VIT_E_CHECKPOINT,
                         "'patch_embed.proj.weight' is too large");
    v->enc.D = (int)pe->shape[0];
    v->C = (int)pe->shape[1];
    v->P = (int)pe->shape[2];
    r->cls = has(w, "cls_token");
    const vit__tensor *reg = vit__weights_find(w, "reg_token");
    if (reg && (reg->ndim != 3 || reg->shape[1] < 1 || reg->shape[1] > 4096))
        return vit__fail(err, VIT_E_CHECKPOINT,
                         "'reg_token' must be (1, registers, %d)", v->enc.D);
    r->R = reg ? (int)reg->shape[1] : 0;
    r->dist = has(w, "dist_token");
    v->nprefix = r->cls + r->dist + r->R;
    char name[64];
    for (r->L = 0; r->L < CFG_MAX_LAYERS; r->L++) {
        snprintf(name, sizeof name, "blocks.%d.norm1.weight", r->L);
        if (!has(w, name))
            break;
    }
    v->enc.L = r->L;
    const vit__tensor *fc1 = vit__weights_find(w, "blocks.0.mlp.fc1.weight");
    if (r->L && (!fc1 || fc1->ndim != 2 || fc1->shape[0] > 4 * CFG_MAX_DIM))
        return vit__fail(err, VIT_E_CHECKPOINT,
                         "checkpoint has no 2-d tensor "
                         "'blocks.0.mlp.fc1.weight'");
    v->enc.F = fc1 ? (int)fc1->shape[0] : v->enc.D;
    r->qkv_bias = has(w, "blocks.0.attn.qkv.bias");
    r->qkn = has(w, "blocks.0.attn.q_norm.weight");
    r->ls = has(w, "blocks.0.ls1.gamma");
    return VIT_OK;
}

/* The prefix tokens (class token, then the registers) and the position
 * embeddings token by token: timm adds them to every token, or with
 * no_embed_class to the patches only (the prefix tokens get zeros). */
static vit_status bind_tokens(timm_read *r, vit__weights *w, vit__vision *v,
                              vit_error *err)
{
    int D = v->D, NP = v->NP, np = v->nprefix;
    const vit__tensor *pt = vit__weights_find(w, "pos_embed");
    if (!pt || pt->ndim != 3)
        return vit__fail(err, VIT_E_CHECKPOINT,
                         "checkpoint has no 3-d tensor 'pos_embed'");
    r->pos_prefix = pt->shape[1] == (int64_t)NP + np && np ? 1 : 0;
    if (pt->shape[1] != NP && !r->pos_prefix)
        return vit__fail(err, VIT_E_CHECKPOINT,
                         "'pos_embed' has %lld positions; the %dx%d patch "
                         "grid of the %dx%d input with %d prefix tokens "
                         "takes %d or %d",
                         (long long)pt->shape[1], v->gh, v->gw, v->Hi, v->Wi,
                         np, NP, NP + np);
    const float *pos = get(w, "pos_embed", 3, 1, pt->shape[1], D, err);
    if (!pos)
        return VIT_E_CHECKPOINT;
    float *p = vit__weights_alloc(w, (size_t)v->T * D, err);
    float *pre = p && np ? vit__weights_alloc(w, (size_t)np * D, err) : NULL;
    if (!p || (np && !pre))
        return VIT_E_NOMEM;
    if (r->pos_prefix) {
        memcpy(p, pos, (size_t)v->T * D * sizeof *p);
    } else {
        memset(p, 0, (size_t)np * D * sizeof *p);
        memcpy(p + (size_t)np * D, pos, (size_t)NP * D * sizeof *p);
    }
    v->pos = p;
    if (r->cls) {
        const float *c = get(w, "cls_token", 3, 1, 1, D, err);
        if (!c)
            return VIT_E_CHECKPOINT;
        memcpy(pre, c, (size_t)D * sizeof *pre);
    }
    if (r->dist) {
        const float *g = get(w, "dist_token", 3, 1, 1, D, err);
        if (!g)
            return VIT_E_CHECKPOINT;
        memcpy(pre + (size_t)r->cls * D, g, (size_t)D * sizeof *pre);
    }
    if (r->R) {
        const float *g = get(w, "reg_token", 3, 1, r->R, D, err);
        if (!g)
            return VIT_E_CHECKPOINT;
        memcpy(pre + (size_t)(r->cls + r->dist) * D, g,
               (size_t)r->R * D * sizeof *pre);
    }
    v->prefix = pre;
    return VIT_OK;
}

/* An optional (D) layernorm's weight and bias: both, or neither. */
static vit_status norm_pair(vit__weights *w, const char *name, int D,
                            const float **g, const float **b, vit_error *err)
{
    char wn[64], bn[64];
    snprintf(wn, sizeof wn, "%s.weight", name);
    snprintf(bn, sizeof bn, "%s.bias", name);
    *g = *b = NULL;
    if (!has(w, wn))
        return VIT_OK;
    if (!(*g = get(w, wn, 1, D, 0, 0, err)) ||
        !(*b = get(w, bn, 1, D, 0, 0, err)))
        return VIT_E_CHECKPOINT;
    return VIT_OK;
}

/* timm's AttentionPoolLatent: one latent query (q) against the tokens'
 * keys and values (kv, fused), as SigLIP's head with q and kv stacked
 * into its (3D, D) in-projection. */
static vit_status bind_map(vit__weights *w, const vit__vision *v,
                           vit__map_head *h, vit_error *err)
{
    int D = v->D, F = v->enc.F;
    const float *q, *qb, *kv, *kvb;
    if (!(h->probe = get(w, "attn_pool.latent", 3, 1, 1, D, err)) ||
        !(q = get(w, "attn_pool.q.weight", 2, D, D, 0, err)) ||
        !(qb = get(w, "attn_pool.q.bias", 1, D, 0, 0, err)) ||
        !(kv = get(w, "attn_pool.kv.weight", 2, 2 * D, D, 0, err)) ||
        !(kvb = get(w, "attn_pool.kv.bias", 1, 2 * D, 0, 0, err)) ||
        !(h->out_w = get(w, "attn_pool.proj.weight", 2, D, D, 0, err)) ||
        !(h->out_b = get(w, "attn_pool.proj.bias", 1, D, 0, 0, err)) ||
        !(h->ln_w = get(w, "attn_pool.norm.weight", 1, D, 0, 0, err)) ||
        !(h->ln_b = get(w, "attn_pool.norm.bias", 1, D, 0, 0, err)) ||
        !(h->w1 = get(w, "attn_pool.mlp.fc1.weight", 2, F, D, 0, err)) ||
        !(h->b1 = get(w, "attn_pool.mlp.fc1.bias", 1, F, 0, 0, err)) ||
        !(h->w2 = get(w, "attn_pool.mlp.fc2.weight", 2, D, F, 0, err)) ||
        !(h->b2 = get(w, "attn_pool.mlp.fc2.bias", 1, D, 0, 0, err)))
        return VIT_E_CHECKPOINT;
    size_t dd = (size_t)D * D;
    float *in_w = vit__weights_alloc(w, 3 * dd, err);
    float *in_b = in_w ? vit__weights_alloc(w, 3 * (size_t)D, err) : NULL;
    if (!in_b)
        return VIT_E_NOMEM;
    memcpy(in_w, q, dd * sizeof *in_w);
    memcpy(in_w + dd, kv, 2 * dd * sizeof *in_w);
    memcpy(in_b, qb, (size_t)D * sizeof *in_b);
    memcpy(in_b + D, kvb, 2 * (size_t)D * sizeof *in_b);
    h->in_w = in_w;
    h->in_b = in_b;
    return VIT_OK;
}

static vit_status bind_encoder(timm_read *r, vit__weights *w, vit__vision *v,
                               vit_error *err)
{
    vit__layer_names nm = {
        .ln1_w = "%sblocks.%d.norm1.weight",
        .ln1_b = "%sblocks.%d.norm1.bias",
        .wqkv = "%sblocks.%d.attn.qkv.weight",
        .bqkv = "%sblocks.%d.attn.qkv.bias",
        .wo = "%sblocks.%d.attn.proj.weight",
        .bo = "%sblocks.%d.attn.proj.bias",
        .ln2_w = "%sblocks.%d.norm2.weight",
        .ln2_b = "%sblocks.%d.norm2.bias",
        .w1 = "%sblocks.%d.mlp.fc1.weight",
        .b1 = "%sblocks.%d.mlp.fc1.bias",
        .w2 = "%sblocks.%d.mlp.fc2.weight",
        .b2 = "%sblocks.%d.mlp.fc2.bias",
    };
    if (r->ls) {
        nm.ls1 = "%sblocks.%d.ls1.gamma";
        nm.ls2 = "%sblocks.%d.ls2.gamma";
    }
    if (r->qkn) {
        nm.qn_w = "%sblocks.%d.attn.q_norm.weight";
        nm.qn_b = "%sblocks.%d.attn.q_norm.bias";
        nm.kn_w = "%sblocks.%d.attn.k_norm.weight";
        nm.kn_b = "%sblocks.%d.attn.k_norm.bias";
    }
    return vit__encoder_bind(&v->enc, w, &nm, "", r->qkv_bias, err);
}

/* A distilled DeiT's two heads, whose mean timm returns: made one (L, 2D)
 * product over the class and distillation tokens side by side, half of
 * each head. */
static vit_status bind_distilled_head(vit__weights *w, vit__timm *t, int D,
                                      vit_error *err)
{
    int L = t->num_classes;
    const float *dw, *db;
    if (!(dw = get(w, "head_dist.weight", 2, L, D, 0, err)) ||
        !(db = get(w, "head_dist.bias", 1, L, 0, 0, err)))
        return VIT_E_CHECKPOINT;
    vit_status st = vit__pair_heads(w, t->head_w, t->head_b, dw, db, L, D,
                                    &t->head_w, &t->head_b, err);
    t->head_pair = st == VIT_OK;
    return st;
}

static const timm_arch *find_arch(const char *name)
{
    for (size_t i = 0; i < sizeof archs / sizeof *archs; i++)
        if (strcmp(archs[i].name, name) == 0)
            return &archs[i];
    return NULL;
}

static vit_status bind_all(timm_read *r, vit__weights *w, vit__vision *v,
                           vit__map_head *map, vit__timm *t,
                           vit__processor *proc, vit_error *err)
{
    const char *name = json_string_value(json_object_get(r->cfg,
                                                         "architecture"));
    const timm_arch *a = find_arch(name);
    if (!a)
        return vit__fail(err, VIT_E_UNSUPPORTED,
                         "%s: timm architecture \"%s\" is not one of timm's "
                         "VisionTransformer models vit runs (vit_*, deit3_*, "
                         "...; the list is vit/timm_archs.h)",
                         r->path, name);
    if (a->unsupported)
        return vit__fail(err, VIT_E_UNSUPPORTED,
                         "%s: timm's %s is not supported: %s", r->path, name,
                         a->unsupported);
    vit_status st;
    v->enc.eps = a->eps;
    v->enc.act = a->act;
    if ((st = check_args(r, err)) || (st = read_act(r, &v->enc.act, err)) ||
        (st = vit__cfg_int(r->args, r->path, "num_heads", a->heads, 1,
                           CFG_MAX_DIM, &v->enc.H, err)) ||
        (st = read_pool(r, a, t, err)) ||
        (st = read_classes(r, w, t, err)) ||
        (st = read_tensors(r, w, v, err)))
        return st;
    if (v->enc.D % v->enc.H)
        return vit__fail(err, VIT_E_CONFIG,
                         "%s: the width %d does not divide by %d heads",
                         r->path, v->enc.D, v->enc.H);
    if (t->pool == VIT_TIMM_TOKEN && !r->cls)
        return vit__fail(err, VIT_E_CONFIG,
                         "%s: global_pool \"token\" without a class token",
                         r->path);
    if ((t->pool == VIT_TIMM_DISTILLED) != r->dist || (r->dist && (!r->cls ||
                                                                 r->R)))
        return vit__fail(err, VIT_E_CHECKPOINT,
                         "%s: a distillation token belongs to a distilled "
                         "DeiT (deit_*_distilled_*), with a class token and "
                         "no registers",
                         r->path);
    if ((st = read_input_size(r, v->C, &v->Hi, &v->Wi, err)) ||
        (st = vit__vision_geometry(v, r->path, err)) ||
        (st = read_transform(r, v->Hi, v->Wi, proc, err)))
        return st;
    v->qkv_bias = r->qkv_bias;
    v->post_all = 1;
    /* Every tensor must be one this reading binds. */
    for (size_t i = 0; i < w->ntensors; i++)
        if (!expected(r, t, v, w->tensors[i].name))
            return vit__fail(err, VIT_E_UNSUPPORTED,
                             "tensor '%s' is not part of a timm "
                             "VisionTransformer vit runs (%s, global_pool "
                             "%s)",
                             w->tensors[i].name, name,
                             t->pool == VIT_TIMM_MAP ? "map" : "not map");
    int D = v->D;
    {
        int64_t shape[4] = {D, v->C, v->P, v->P};
        if (!(v->patch_w = vit__weights_get(w, "patch_embed.proj.weight", 4,
                                            shape, err)))
            return VIT_E_CHECKPOINT;
    }
    if (has(w, "patch_embed.proj.bias") &&
        !(v->patch_b = get(w, "patch_embed.proj.bias", 1, D, 0, 0, err)))
        return VIT_E_CHECKPOINT;
    if ((st = bind_tokens(r, w, v, err)) ||
        (st = norm_pair(w, "norm_pre", D, &v->pre_w, &v->pre_b, err)) ||
        (st = norm_pair(w, "norm", D, &v->post_w, &v->post_b, err)) ||
        (st = norm_pair(w, "fc_norm", D, &t->fc_w, &t->fc_b, err)) ||
        (st = bind_encoder(r, w, v, err)))
        return st;
    if (t->pool == VIT_TIMM_DISTILLED && t->fc_w)
        return vit__fail(err, VIT_E_UNSUPPORTED,
                         "%s: a distilled DeiT with fc_norm (which timm's "
                         "distilled head does not apply)",
                         r->path);
    if (t->pool == VIT_TIMM_MAP) {
        if ((st = bind_map(w, v, map, err)))
            return st;
        map->skip = t->pool_prefix ? 0 : v->nprefix;
    }
    if (t->num_classes) {
        if (!(t->head_w = get(w, "head.weight", 2, t->num_classes, D, 0,
                              err)) ||
            !(t->head_b = get(w, "head.bias", 1, t->num_classes, 0, 0, err)))
            return VIT_E_CHECKPOINT;
        if (r->dist && (st = bind_distilled_head(w, t, D, err)))
            return st;
        return read_labels(r, t, err);
    }
    if (has(w, "head.weight"))
        return vit__fail(err, VIT_E_CONFIG,
                         "%s: num_classes is 0 but the checkpoint has a head",
                         r->path);
    return VIT_OK;
}

vit_status vit__timm_bind(const char *dir, vit__weights *w, char **arch,
                          vit__vision *v, vit__map_head *map, vit__timm *t,
                          vit__processor *proc, vit_error *err)
{
    /* Messages name config.json alone: the loader prefixes the
     * directory. */
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_error_t je;
    timm_read r = {.path = "config.json"};
    r.cfg = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!r.cfg)
        return vit__fail(err, VIT_E_CONFIG, "%s:%d: malformed JSON: %s",
                         r.path, je.line, je.text);
    r.args = json_object_get(r.cfg, "model_args");
    /* A legacy config is one dict: pretrained_cfg's fields at the top. */
    r.pcfg = json_object_get(r.cfg, "pretrained_cfg");
    if (!r.pcfg)
        r.pcfg = r.cfg;
    vit_status st = VIT_OK;
    if ((r.args && !json_is_object(r.args)) ||
        (r.pcfg && !json_is_object(r.pcfg)))
        st = vit__fail(err, VIT_E_CONFIG,
                       "%s: model_args and pretrained_cfg must be objects",
                       r.path);
    if (!st)
        st = bind_all(&r, w, v, map, t, proc, err);
    if (!st && !(*arch = strdup(json_string_value(
                     json_object_get(r.cfg, "architecture")))))
        st = vit__fail(err, VIT_E_NOMEM, "out of memory");
    json_decref(r.cfg);
    return st;
}

vit_status vit__timm_weights_open(const char *dir, vit__weights **w,
                                  vit_error *err)
{
    char st[4096], idx[4096], bin[4096];
    snprintf(st, sizeof st, "%s/model.safetensors", dir);
    snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", dir);
    snprintf(bin, sizeof bin, "%s/pytorch_model.bin", dir);
    FILE *f;
    int have = 0;
    const char *const paths[] = {st, idx};
    for (int i = 0; i < 2; i++)
        if ((f = fopen(paths[i], "rb"))) {
            have = 1;
            fclose(f);
        }
    if (!have && (f = fopen(bin, "rb"))) {
        fclose(f);
        return vit__fail(err, VIT_E_UNSUPPORTED,
                         "%s holds only pytorch_model.bin; vit reads "
                         "safetensors. Download the model's "
                         "model.safetensors (timm's hub repositories have "
                         "one), or convert once in Python with timm: "
                         "`timm.models.save_for_hf(timm.create_model("
                         "'local-dir:DIR', pretrained=True), DIR, "
                         "safe_serialization=True)`",
                         dir);
    }
    return vit__weights_open(dir, w, err);
}

/* ---- pooling ---- */

void vit__timm_pool(const vit__timm *t, const vit__vision *v, const float *x,
                    int B, float *out)
{
    int D = v->D, T = v->T, t0 = t->pool_prefix ? 0 : v->nprefix;
    for (int b = 0; b < B && t->pool != VIT_TIMM_MAP; b++) {
        const float *xb = x + (size_t)b * T * D;
        float *o = out + (size_t)b * D;
        if (t->pool == VIT_TIMM_TOKEN) {
            memcpy(o, xb, (size_t)D * sizeof *o);
            continue;
        }
        if (t->pool == VIT_TIMM_DISTILLED) {
            for (int d = 0; d < D; d++)
                o[d] = (xb[d] + xb[D + d]) / 2;
            continue;
        }
        /* The mean as torch sums a (T, D) tensor's rows per column, and
         * the max. */
        for (int d = 0; d < D; d++) {
            float sum = 0, mx = xb[(size_t)t0 * D + d];
            for (int i = t0; i < T; i++) {
                float e = xb[(size_t)i * D + d];
                sum += e;
                mx = e > mx ? e : mx;
            }
            float mean = sum / (float)(T - t0);
            o[d] = t->pool == VIT_TIMM_AVG   ? mean
                   : t->pool == VIT_TIMM_MAX ? mx
                                             : 0.5f * (mx + mean);
        }
    }
    if (t->fc_w)
        vit__layernorm(out, out, t->fc_w, t->fc_b, B, D, v->enc.eps);
}
