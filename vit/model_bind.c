/*
 * Binding a checkpoint's tensors to the towers and heads, by the naming
 * of each family (ViT, DeiT, DINOv2, CLIP, SigLIP).
 */
#include "vit/model_impl.h"

#include <math.h>
#include <string.h>

/* ---- binding tensors ---- */

/* ViT's attention, which DeiT and DINOv2 keep. */
#define VIT_ATTENTION_NAMES                                                 \
    .wq = "%sencoder.layer.%d.attention.attention.query.weight",           \
    .bq = "%sencoder.layer.%d.attention.attention.query.bias",             \
    .wk = "%sencoder.layer.%d.attention.attention.key.weight",             \
    .bk = "%sencoder.layer.%d.attention.attention.key.bias",               \
    .wv = "%sencoder.layer.%d.attention.attention.value.weight",           \
    .bv = "%sencoder.layer.%d.attention.attention.value.bias",             \
    .wo = "%sencoder.layer.%d.attention.output.dense.weight",              \
    .bo = "%sencoder.layer.%d.attention.output.dense.bias"

static const vit__layer_names vit_names = {
    .ln1_w = "%sencoder.layer.%d.layernorm_before.weight",
    .ln1_b = "%sencoder.layer.%d.layernorm_before.bias",
    VIT_ATTENTION_NAMES,
    .ln2_w = "%sencoder.layer.%d.layernorm_after.weight",
    .ln2_b = "%sencoder.layer.%d.layernorm_after.bias",
    .w1 = "%sencoder.layer.%d.intermediate.dense.weight",
    .b1 = "%sencoder.layer.%d.intermediate.dense.bias",
    .w2 = "%sencoder.layer.%d.output.dense.weight",
    .b2 = "%sencoder.layer.%d.output.dense.bias",
};

static const vit__layer_names dino_names = {
    .ln1_w = "%sencoder.layer.%d.norm1.weight",
    .ln1_b = "%sencoder.layer.%d.norm1.bias",
    VIT_ATTENTION_NAMES,
    .ln2_w = "%sencoder.layer.%d.norm2.weight",
    .ln2_b = "%sencoder.layer.%d.norm2.bias",
    .w1 = "%sencoder.layer.%d.mlp.fc1.weight",
    .b1 = "%sencoder.layer.%d.mlp.fc1.bias",
    .w2 = "%sencoder.layer.%d.mlp.fc2.weight",
    .b2 = "%sencoder.layer.%d.mlp.fc2.bias",
    .ls1 = "%sencoder.layer.%d.layer_scale1.lambda1",
    .ls2 = "%sencoder.layer.%d.layer_scale2.lambda1",
};

/* DINOv2 giant's: SwiGLU's gate and up in one (2F, D) weights_in. */
static const vit__layer_names dino_swiglu_names = {
    .ln1_w = "%sencoder.layer.%d.norm1.weight",
    .ln1_b = "%sencoder.layer.%d.norm1.bias",
    VIT_ATTENTION_NAMES,
    .ln2_w = "%sencoder.layer.%d.norm2.weight",
    .ln2_b = "%sencoder.layer.%d.norm2.bias",
    .w1 = "%sencoder.layer.%d.mlp.weights_in.weight",
    .b1 = "%sencoder.layer.%d.mlp.weights_in.bias",
    .w2 = "%sencoder.layer.%d.mlp.weights_out.weight",
    .b2 = "%sencoder.layer.%d.mlp.weights_out.bias",
    .ls1 = "%sencoder.layer.%d.layer_scale1.lambda1",
    .ls2 = "%sencoder.layer.%d.layer_scale2.lambda1",
};

static const vit__layer_names clip_names = {
    .ln1_w = "%sencoder.layers.%d.layer_norm1.weight",
    .ln1_b = "%sencoder.layers.%d.layer_norm1.bias",
    .wq = "%sencoder.layers.%d.self_attn.q_proj.weight",
    .bq = "%sencoder.layers.%d.self_attn.q_proj.bias",
    .wk = "%sencoder.layers.%d.self_attn.k_proj.weight",
    .bk = "%sencoder.layers.%d.self_attn.k_proj.bias",
    .wv = "%sencoder.layers.%d.self_attn.v_proj.weight",
    .bv = "%sencoder.layers.%d.self_attn.v_proj.bias",
    .wo = "%sencoder.layers.%d.self_attn.out_proj.weight",
    .bo = "%sencoder.layers.%d.self_attn.out_proj.bias",
    .ln2_w = "%sencoder.layers.%d.layer_norm2.weight",
    .ln2_b = "%sencoder.layers.%d.layer_norm2.bias",
    .w1 = "%sencoder.layers.%d.mlp.fc1.weight",
    .b1 = "%sencoder.layers.%d.mlp.fc1.bias",
    .w2 = "%sencoder.layers.%d.mlp.fc2.weight",
    .b2 = "%sencoder.layers.%d.mlp.fc2.bias",
};

/* Looks up prefix+name with the given shape (ndim of them used). */
static const float *get(vit_model *m, const char *prefix, const char *name,
                        int ndim, int64_t d0, int64_t d1, int64_t d2,
                        int64_t d3, vit_error *err)
{
    char full[256];
    snprintf(full, sizeof full, "%s%s", prefix, name);
    int64_t shape[4] = {d0, d1, d2, d3};
    return vit__weights_get(m->w, full, ndim, shape, err);
}

/* The prefix tokens of a ViT, DeiT or DINOv2 model, (nprefix, D): the
 * class token, then DeiT's distillation token or DINOv2's registers. */
static vit_status bind_prefix(vit_model *m, const char *px, vit_error *err)
{
    vit__vision *v = &m->vis;
    int D = v->D, extra = v->nprefix - 1;
    const float *cls = get(m, px, "embeddings.cls_token", 3, 1, 1, D, 0, err);
    if (!cls)
        return VIT_E_CHECKPOINT;
    if (extra == 0) {
        v->prefix = cls;
        return VIT_OK;
    }
    const float *more =
        m->family == FAM_DEIT
            ? get(m, px, "embeddings.distillation_token", 3, 1, 1, D, 0, err)
            : get(m, px, "embeddings.register_tokens", 3, 1, extra, D, 0,
                  err);
    float *p = more ? vit__weights_alloc(m->w, (size_t)v->nprefix * D, err)
                    : NULL;
    if (!p)
        return more ? VIT_E_NOMEM : VIT_E_CHECKPOINT;
    memcpy(p, cls, (size_t)D * sizeof *p);
    memcpy(p + D, more, (size_t)extra * D * sizeof *p);
    v->prefix = p;
    return VIT_OK;
}

/* DINOv2's position embeddings for the grid it runs at: the class
 * token's, none for the registers (transformers adds the positions
 * before it inserts them), and the patches' resized from the trained
 * grid as transformers resizes them: plain bicubic for Dinov2Model, the
 * antialiased one for Dinov2WithRegistersModel. */
static vit_status bind_dino_pos(vit_model *m, const char *px, vit_error *err)
{
    vit__vision *v = &m->vis;
    int D = v->D, R = v->nprefix - 1;
    const float *pos =
        get(m, px, "embeddings.position_embeddings", 3, 1,
            (int64_t)m->pos_gh * m->pos_gw + 1, D, 0, err);
    float *p = pos ? vit__weights_alloc(m->w, (size_t)v->T * D, err) : NULL;
    if (!p)
        return pos ? VIT_E_NOMEM : VIT_E_CHECKPOINT;
    memcpy(p, pos, (size_t)D * sizeof *p);
    memset(p + D, 0, (size_t)R * D * sizeof *p);
    vit_status st = vit__pos_resize(p + (size_t)(1 + R) * D, pos + D,
                                    m->pos_gh, m->pos_gw, v->gh, v->gw, D,
                                    m->family == FAM_DINOV2_REG, err);
    v->pos = p;
    return st;
}

/* The classifier: ViT's and DINOv2's `classifier` (over the class token,
 * or DINOv2's over it and the patches' mean), DeiT's pair of heads over
 * the class and distillation tokens, whose mean transformers returns:
 * made one (L, 2D) product of half of each. */
static vit_status bind_classifier(vit_model *m, vit_error *err)
{
    int D = m->vis.D, L = m->num_labels;
    int dino = m->family == FAM_DINOV2 || m->family == FAM_DINOV2_REG;
    if (!m->distilled) {
        m->head_pair = dino ? 2 : 0;
        int K = dino ? 2 * D : D;
        if (!(m->head_w = get(m, "", "classifier.weight", 2, L, K, 0, 0,
                              err)) ||
            !(m->head_b = get(m, "", "classifier.bias", 1, L, 0, 0, 0, err)))
            return VIT_E_CHECKPOINT;
        return VIT_OK;
    }
    const float *cw, *cb, *dw, *db;
    if (!(cw = get(m, "", "cls_classifier.weight", 2, L, D, 0, 0, err)) ||
        !(cb = get(m, "", "cls_classifier.bias", 1, L, 0, 0, 0, err)) ||
        !(dw = get(m, "", "distillation_classifier.weight", 2, L, D, 0, 0,
                   err)) ||
        !(db = get(m, "", "distillation_classifier.bias", 1, L, 0, 0, 0,
                   err)))
        return VIT_E_CHECKPOINT;
    vit_status st = vit__pair_heads(m->w, cw, cb, dw, db, L, D, &m->head_w,
                                    &m->head_b, err);
    m->head_pair = st == VIT_OK;
    return st;
}

static vit_status bind_vit(vit_model *m, vit_error *err)
{
    /* A classifier nests the base model under its name ("vit.", "deit.",
     * "dinov2."); the base model saves it at the top level. */
    static const char *const nests[] = {"vit.", "deit.", "dinov2.",
                                        "dinov2_with_registers."};
    const char *px = "";
    for (size_t i = 0; i < sizeof nests / sizeof *nests; i++) {
        char name[64];
        snprintf(name, sizeof name, "%sembeddings.cls_token", nests[i]);
        if (vit__weights_find(m->w, name))
            px = nests[i];
    }
    vit__vision *v = &m->vis;
    int D = v->D, dino = m->family == FAM_DINOV2 || m->family == FAM_DINOV2_REG;
    vit_status st;
    if (!(v->patch_w = get(m, px, "embeddings.patch_embeddings.projection.weight",
                           4, D, v->C, v->P, v->P, err)) ||
        !(v->patch_b = get(m, px, "embeddings.patch_embeddings.projection.bias",
                           1, D, 0, 0, 0, err)) ||
        !(v->post_w = get(m, px, "layernorm.weight", 1, D, 0, 0, 0, err)) ||
        !(v->post_b = get(m, px, "layernorm.bias", 1, D, 0, 0, 0, err)))
        return VIT_E_CHECKPOINT;
    if ((st = bind_prefix(m, px, err)))
        return st;
    if (dino)
        st = bind_dino_pos(m, px, err);
    else if (!(v->pos = get(m, px, "embeddings.position_embeddings", 3, 1,
                            v->T, D, 0, err)))
        st = VIT_E_CHECKPOINT;
    if (st || (st = vit__encoder_bind(&v->enc, m->w,
                                      m->swiglu ? &dino_swiglu_names
                                      : dino    ? &dino_names
                                                : &vit_names,
                                      px, v->qkv_bias, err)))
        return st;
    if (m->arch == VIT_ARCH_VIT_CLASSIFIER)
        return bind_classifier(m, err);
    if (vit__weights_find(m->w, "pooler.dense.weight")) {
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

/* What CLIP's and SigLIP's vision towers share: the patch weights,
 * positions, final layernorm and encoder, under px. */
static vit_status bind_image_tower(vit_model *m, const char *px,
                                   vit_error *err)
{
    vit__vision *v = &m->vis;
    int D = v->D;
    if (!(v->patch_w = get(m, px, "embeddings.patch_embedding.weight", 4, D,
                           v->C, v->P, v->P, err)) ||
        !(v->pos = get(m, px, "embeddings.position_embedding.weight", 2, v->T,
                       D, 0, 0, err)) ||
        !(v->post_w = get(m, px, "post_layernorm.weight", 1, D, 0, 0, 0,
                          err)) ||
        !(v->post_b = get(m, px, "post_layernorm.bias", 1, D, 0, 0, 0, err)))
        return VIT_E_CHECKPOINT;
    return vit__encoder_bind(&v->enc, m->w, &clip_names, px, 1, err);
}

/* What CLIP's and SigLIP's text towers share: the embeddings, final
 * layernorm and encoder, under px. */
static vit_status bind_text_tower(vit_model *m, const char *px,
                                  vit_error *err)
{
    vit__text *t = &m->txt;
    int D = t->D;
    if (!(t->tok = get(m, px, "embeddings.token_embedding.weight", 2, t->V, D,
                       0, 0, err)) ||
        !(t->pos = get(m, px, "embeddings.position_embedding.weight", 2,
                       t->Tmax, D, 0, 0, err)) ||
        !(t->ln_w = get(m, px, "final_layer_norm.weight", 1, D, 0, 0, 0,
                        err)) ||
        !(t->ln_b = get(m, px, "final_layer_norm.bias", 1, D, 0, 0, 0, err)))
        return VIT_E_CHECKPOINT;
    return vit__encoder_bind(&t->enc, m->w, &clip_names, px, 1, err);
}

static vit_status bind_siglip(vit_model *m, vit_error *err)
{
    vit_status st;
    if (m->has_vision) {
        vit__vision *v = &m->vis;
        vit__map_head *h = &m->map;
        int D = v->D, F = v->enc.F;
        /* A tower saved alone by transformers 5 has no prefix; one saved
         * by 4.x, or in a SiglipModel, has the tower's name. */
        const char *px =
            vit__weights_find(m->w, "vision_model.embeddings.patch_embedding.weight")
                ? "vision_model."
                : "";
        if ((st = bind_image_tower(m, px, err)))
            return st;
        if (!(v->patch_b = get(m, px, "embeddings.patch_embedding.bias", 1, D,
                               0, 0, 0, err)) ||
            !(h->probe = get(m, px, "head.probe", 3, 1, 1, D, 0, err)) ||
            !(h->in_w = get(m, px, "head.attention.in_proj_weight", 2, 3 * D,
                            D, 0, 0, err)) ||
            !(h->in_b = get(m, px, "head.attention.in_proj_bias", 1, 3 * D, 0,
                            0, 0, err)) ||
            !(h->out_w = get(m, px, "head.attention.out_proj.weight", 2, D, D,
                             0, 0, err)) ||
            !(h->out_b = get(m, px, "head.attention.out_proj.bias", 1, D, 0,
                             0, 0, err)) ||
            !(h->ln_w = get(m, px, "head.layernorm.weight", 1, D, 0, 0, 0,
                            err)) ||
            !(h->ln_b = get(m, px, "head.layernorm.bias", 1, D, 0, 0, 0,
                            err)) ||
            !(h->w1 = get(m, px, "head.mlp.fc1.weight", 2, F, D, 0, 0, err)) ||
            !(h->b1 = get(m, px, "head.mlp.fc1.bias", 1, F, 0, 0, 0, err)) ||
            !(h->w2 = get(m, px, "head.mlp.fc2.weight", 2, D, F, 0, 0, err)) ||
            !(h->b2 = get(m, px, "head.mlp.fc2.bias", 1, D, 0, 0, 0, err)))
            return VIT_E_CHECKPOINT;
    }
    if (m->has_text) {
        vit__text *t = &m->txt;
        int D = t->D, E = m->proj_dim;
        const char *px =
            vit__weights_find(m->w, "text_model.embeddings.token_embedding.weight")
                ? "text_model."
                : "";
        if ((st = bind_text_tower(m, px, err)))
            return st;
        if (!(m->tproj = get(m, px, "head.weight", 2, E, D, 0, 0, err)) ||
            !(m->tproj_b = get(m, px, "head.bias", 1, E, 0, 0, 0, err)))
            return VIT_E_CHECKPOINT;
    }
    if (m->arch == VIT_ARCH_SIGLIP) {
        const float *ls = get(m, "", "logit_scale", 1, 1, 0, 0, 0, err);
        const float *lb = ls ? get(m, "", "logit_bias", 1, 1, 0, 0, 0, err)
                             : NULL;
        if (!lb)
            return VIT_E_CHECKPOINT;
        m->logit_scale = expf(*ls);
        m->logit_bias = *lb;
    }
    return VIT_OK;
}

/* timm's VisionTransformer: a classifier with num_classes, else an
 * embedder; the eval transform is its pretrained_cfg's. */
static vit_status bind_timm(vit_model *m, const char *dir, vit_error *err)
{
    m->has_vision = 1;
    vit_status st = vit__timm_bind(dir, m->w, &m->architecture, &m->vis,
                                   &m->map, &m->timm, &m->proc, err);
    m->num_labels = m->timm.num_classes;
    m->labels = m->timm.labels;
    m->head_w = m->timm.head_w;
    m->head_b = m->timm.head_b;
    m->head_pair = m->timm.head_pair;
    m->arch = m->num_labels ? VIT_ARCH_VIT_CLASSIFIER : VIT_ARCH_VIT_MODEL;
    return st;
}

static vit_status bind_clip(vit_model *m, vit_error *err)
{
    vit_status st;
    int E = m->proj_dim;
    if (m->has_vision) {
        vit__vision *v = &m->vis;
        int D = v->D;
        const char *px = "vision_model.";
        if ((st = bind_image_tower(m, px, err)))
            return st;
        if (!(v->prefix = get(m, px, "embeddings.class_embedding", 1, D, 0,
                              0, 0, err)) ||
            !(v->pre_w = get(m, px, "pre_layrnorm.weight", 1, D, 0, 0, 0,
                             err)) ||
            !(v->pre_b = get(m, px, "pre_layrnorm.bias", 1, D, 0, 0, 0,
                             err)) ||
            !(m->vproj = get(m, "", "visual_projection.weight", 2, E, D, 0, 0,
                             err)))
            return VIT_E_CHECKPOINT;
    }
    if (m->has_text) {
        vit__text *t = &m->txt;
        int D = t->D;
        if ((st = bind_text_tower(m, "text_model.", err)))
            return st;
        if (!(m->tproj = get(m, "", "text_projection.weight", 2, E, D, 0, 0,
                             err)))
            return VIT_E_CHECKPOINT;
    }
    if (m->arch == VIT_ARCH_CLIP) {
        const float *ls = get(m, "", "logit_scale", 0, 0, 0, 0, 0, err);
        if (!ls)
            return VIT_E_CHECKPOINT;
        m->logit_scale = expf(*ls);
    }
    return VIT_OK;
}

vit_status vit__bind_model(vit_model *m, const char *dir, vit_error *err)
{
    return m->family == FAM_TIMM     ? bind_timm(m, dir, err)
           : m->family == FAM_SIGLIP ? bind_siglip(m, err)
           : m->family == FAM_CLIP   ? bind_clip(m, err)
                                     : bind_vit(m, err);
}
