/*
 * A model directory's config.json: which architecture and family it
 * names, the towers' geometry, the labels and the heads' sizes.
 */
#include "vit/model_impl.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

/* ---- config.json ---- */

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

/* The encoder fields every family shares, with the family's defaults. */
static vit_status read_encoder(json_t *c, const char *path, vit__encoder *e,
                               int d_def, int l_def, int h_def, int f_def,
                               const char *act_def, double eps_def,
                               vit_error *err)
{
    vit_status st;
    double eps;
    if ((st = vit__cfg_int(c, path, "hidden_size", d_def, 1, CFG_MAX_DIM,
                           &e->D, err)) ||
        (st = vit__cfg_int(c, path, "num_hidden_layers", l_def, 0,
                           CFG_MAX_LAYERS, &e->L, err)) ||
        (st = vit__cfg_int(c, path, "num_attention_heads", h_def, 1,
                           CFG_MAX_DIM, &e->H, err)) ||
        (st = vit__cfg_int(c, path, "intermediate_size", f_def, 1,
                           4 * CFG_MAX_DIM, &e->F, err)) ||
        (st = vit__cfg_act(c, path, "hidden_act", act_def, &e->act, err)) ||
        (st = vit__cfg_float(c, path, "layer_norm_eps", eps_def, &eps, err)))
        return st;
    if (e->D % e->H)
        return vit__fail(err, VIT_E_CONFIG,
                         "%s: hidden_size %d does not divide by "
                         "num_attention_heads %d",
                         path, e->D, e->H);
    if (!(eps > 0))
        return vit__fail(err, VIT_E_CONFIG,
                         "%s: layer_norm_eps must be positive", path);
    e->eps = (float)eps;
    return VIT_OK;
}

static vit_status read_vision(json_t *c, const char *path, vit__vision *v,
                              int clip, int dino, vit_error *err)
{
    int ph, pw;
    vit_status st;
    if ((st = read_encoder(c, path, &v->enc, 768, 12, 12, 3072,
                           clip ? "quick_gelu" : "gelu",
                           clip ? 1e-5 : dino ? 1e-6 : 1e-12, err)) ||
        (st = vit__cfg_int(c, path, "num_channels", 3, 1, 64, &v->C, err)) ||
        (st = vit__cfg_size2(c, path, "image_size", 224, &v->Hi, &v->Wi,
                             err)) ||
        (st = vit__cfg_size2(c, path, "patch_size",
                             clip ? 32 : dino ? 14 : 16, &ph, &pw, err)))
        return st;
    if (ph != pw)
        return vit__fail(err, VIT_E_UNSUPPORTED,
                         "%s: non-square patches (%dx%d)", path, ph, pw);
    v->P = ph;
    if ((int64_t)v->C * v->P * v->P > CFG_MAX_DIM * 16)
        return vit__fail(err, VIT_E_CONFIG, "%s: patches too large", path);
    return vit__vision_geometry(v, path, err);
}

static vit_status read_text(json_t *c, const char *path, vit__text *t,
                            int siglip, vit_error *err)
{
    vit_status st;
    t->siglip = siglip;
    if ((st = siglip ? read_encoder(c, path, &t->enc, 768, 12, 12, 3072,
                                    "gelu_pytorch_tanh", 1e-6, err)
                     : read_encoder(c, path, &t->enc, 512, 12, 8, 2048,
                                    "quick_gelu", 1e-5, err)) ||
        (st = vit__cfg_int(c, path, "vocab_size", siglip ? 32000 : 49408, 1,
                           CFG_MAX_VOCAB, &t->V, err)) ||
        (st = vit__cfg_int(c, path, "max_position_embeddings",
                           siglip ? 64 : 77, 2, 4096, &t->Tmax, err)) ||
        (st = vit__cfg_int(c, path, "eos_token_id", 49407, 0,
                           CFG_MAX_VOCAB, &t->eos_id, err)) ||
        (st = vit__cfg_int(c, path, "bos_token_id", 49406, 0,
                           CFG_MAX_VOCAB, &t->bos_id, err)) ||
        (st = vit__cfg_int(c, path, "pad_token_id", 1, 0, CFG_MAX_VOCAB,
                           &t->pad_id, err)))
        return st;
    t->D = t->enc.D;
    return VIT_OK;
}

/* The ViT-core image models: ViT, DeiT and DINOv2 (with registers), as
 * classifiers or embedders. */
static vit_status read_image_model(vit_model *m, json_t *cfg,
                                   const char *path, vit_error *err)
{
    vit__vision *v = &m->vis;
    int dino = m->family == FAM_DINOV2 || m->family == FAM_DINOV2_REG;
    int regs = 0;
    m->has_vision = 1;
    v->post_all = 1;
    v->nprefix = m->family == FAM_DEIT ? 2 : 1;
    vit_status st;
    if ((st = read_vision(cfg, path, v, 0, dino, err)) ||
        (st = vit__cfg_bool(cfg, path, "qkv_bias", 1, &v->qkv_bias, err)))
        return st;
    if (dino) {
        double ratio;
        if ((st = vit__cfg_float(cfg, path, "mlp_ratio", 4, &ratio, err)) ||
            (st = vit__cfg_bool(cfg, path, "use_swiglu_ffn", 0, &m->swiglu,
                                err)) ||
            (m->family == FAM_DINOV2_REG &&
             (st = vit__cfg_int(cfg, path, "num_register_tokens", 4, 0, 4096,
                                &regs, err))))
            return st;
        if (!(ratio > 0) || ratio * v->D > 4.0 * CFG_MAX_DIM)
            return vit__fail(err, VIT_E_CONFIG,
                             "%s: mlp_ratio %g is out of range", path, ratio);
        /* As transformers sizes Dinov2MLP: int(hidden_size * mlp_ratio);
         * and its SwiGLU (DINOv2 giant) two thirds of that, rounded up to
         * a multiple of 8, for each of its gate and up halves. */
        v->enc.F = (int)(v->D * ratio);
        if (m->swiglu)
            v->enc.F = ((int)(v->enc.F * 2.0 / 3.0) + 7) / 8 * 8;
        v->enc.swiglu = m->swiglu;
        v->nprefix += regs;
        /* The checkpoint's positions are for the configured size; the
         * processor's may differ (facebook/dinov2-*: 518 and 224), and
         * the positions are then resized to its grid. */
        m->pos_gh = v->Hi / v->P;
        m->pos_gw = v->Wi / v->P;
        v->floor_patches = 1;
        if ((st = vit__vision_geometry(v, path, err)))
            return st;
    }
    if (m->arch == VIT_ARCH_VIT_CLASSIFIER)
        return read_labels(m, cfg, path, err);
    if (dino) {
        m->pool_dim = 0; /* the class token after the final layernorm */
        return VIT_OK;
    }
    if ((st = vit__cfg_int(cfg, path, "pooler_output_size", v->D, 1,
                           CFG_MAX_DIM, &m->pool_dim, err)))
        return st;
    return vit__cfg_act(cfg, path, "pooler_act", "tanh", &m->pool_act, err);
}

/* A sub-config of a CLIPModel config, or the top level of a single-tower
 * one. */
static json_t *sub_config(json_t *cfg, const char *key, const char *path,
                          vit_error *err)
{
    json_t *c = json_object_get(cfg, key);
    if (!json_is_object(c))
        vit__fail(err, VIT_E_CONFIG, "%s: \"%s\" is missing", path, key);
    return json_is_object(c) ? c : NULL;
}

/* SigLIP: a vision tower without a class token, pooled by its attention
 * head (its embedding is that head's output, D wide); a text tower
 * without a causal mask, pooled at the last token and projected by its
 * head to projection_size. */
static vit_status read_siglip(vit_model *m, json_t *cfg, const char *path,
                              vit_error *err)
{
    vit_status st;
    json_t *vc = cfg, *tc = cfg;
    m->has_vision = m->arch != VIT_ARCH_SIGLIP_TEXT;
    m->has_text = m->arch != VIT_ARCH_SIGLIP_VISION;
    if (m->arch == VIT_ARCH_SIGLIP &&
        (!(vc = sub_config(cfg, "vision_config", path, err)) ||
         !(tc = sub_config(cfg, "text_config", path, err))))
        return VIT_E_CONFIG;
    vit__vision *v = &m->vis;
    v->qkv_bias = m->txt.qkv_bias = 1;
    v->nprefix = 0;
    v->post_all = 1;
    int use_head, vis_e = 0, txt_e = 0;
    if (m->has_vision) {
        if ((st = vit__cfg_size2(vc, path, "image_size", 224, &v->Hi, &v->Wi,
                                 err)))
            return st;
        if ((st = read_encoder(vc, path, &v->enc, 768, 12, 12, 3072,
                               "gelu_pytorch_tanh", 1e-6, err)) ||
            (st = vit__cfg_int(vc, path, "num_channels", 3, 1, 64, &v->C,
                               err)) ||
            (st = vit__cfg_int(vc, path, "patch_size", 16, 1, 4096, &v->P,
                               err)) ||
            (st = vit__cfg_bool(vc, path, "vision_use_head", 1, &use_head,
                                err)))
            return st;
        if (!use_head)
            return vit__fail(err, VIT_E_UNSUPPORTED,
                             "%s: vision_use_head is false: this SigLIP "
                             "vision tower has no pooled embedding",
                             path);
        if ((st = vit__vision_geometry(v, path, err)))
            return st;
        vis_e = v->D;
    }
    if (m->has_text) {
        if ((st = read_text(tc, path, &m->txt, 1, err)) ||
            (st = vit__cfg_int(tc, path, "projection_size", m->txt.D, 1,
                               CFG_MAX_DIM, &txt_e, err)))
            return st;
    }
    if (vis_e && txt_e && vis_e != txt_e)
        return vit__fail(err, VIT_E_CONFIG,
                         "%s: the text head's projection_size %d is not the "
                         "vision hidden_size %d",
                         path, txt_e, vis_e);
    m->proj_dim = vis_e ? vis_e : txt_e;
    return VIT_OK;
}

vit_status vit__read_config(vit_model *m, const char *dir, vit_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_error_t je;
    json_t *cfg = NULL;
    if (vit__openclip_dir(dir)) {
        snprintf(path, sizeof path, "%s/open_clip_config.json", dir);
        vit_status os = vit__openclip_config(dir, &cfg, err);
        if (os)
            return os;
    } else if (!(cfg = json_load_file(path, JSON_REJECT_DUPLICATES, &je))) {
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
    if (vit__timm_config(cfg)) {
        m->family = FAM_TIMM; /* read with the tensors, by timm.c */
        goto out;
    }
    const char *mt = json_string_value(json_object_get(cfg, "model_type"));
    json_t *archs = json_object_get(cfg, "architectures");
    const char *arch = json_string_value(json_array_get(archs, 0));
    if (!mt)
        mt = "vit";
    /* The first row of a model_type is the class transformers' AutoModel
     * makes of a config that names none. */
    static const struct {
        const char *model_type, *arch;
        vit_arch id;
        vit_family fam;
        int distilled;
    } known[] = {
        {"vit", "ViTModel", VIT_ARCH_VIT_MODEL, FAM_VIT, 0},
        {"vit", "ViTForImageClassification", VIT_ARCH_VIT_CLASSIFIER,
         FAM_VIT, 0},
        {"deit", "DeiTModel", VIT_ARCH_VIT_MODEL, FAM_DEIT, 0},
        {"deit", "DeiTForImageClassification", VIT_ARCH_VIT_CLASSIFIER,
         FAM_DEIT, 0},
        {"deit", "DeiTForImageClassificationWithTeacher",
         VIT_ARCH_VIT_CLASSIFIER, FAM_DEIT, 1},
        {"dinov2", "Dinov2Model", VIT_ARCH_VIT_MODEL, FAM_DINOV2, 0},
        {"dinov2", "Dinov2ForImageClassification", VIT_ARCH_VIT_CLASSIFIER,
         FAM_DINOV2, 0},
        {"dinov2_with_registers", "Dinov2WithRegistersModel",
         VIT_ARCH_VIT_MODEL, FAM_DINOV2_REG, 0},
        {"dinov2_with_registers", "Dinov2WithRegistersForImageClassification",
         VIT_ARCH_VIT_CLASSIFIER, FAM_DINOV2_REG, 0},
        {"clip", "CLIPModel", VIT_ARCH_CLIP, FAM_CLIP, 0},
        {"clip_vision_model", "CLIPVisionModelWithProjection",
         VIT_ARCH_CLIP_VISION, FAM_CLIP, 0},
        {"clip_text_model", "CLIPTextModelWithProjection",
         VIT_ARCH_CLIP_TEXT, FAM_CLIP, 0},
        {"siglip", "SiglipModel", VIT_ARCH_SIGLIP, FAM_SIGLIP, 0},
        {"siglip_vision_model", "SiglipVisionModel", VIT_ARCH_SIGLIP_VISION,
         FAM_SIGLIP, 0},
        {"siglip_text_model", "SiglipTextModel", VIT_ARCH_SIGLIP_TEXT,
         FAM_SIGLIP, 0},
    };
    enum { NKNOWN = sizeof known / sizeof *known };
    for (size_t i = 0; i < NKNOWN && !arch; i++)
        if (strcmp(mt, known[i].model_type) == 0)
            arch = known[i].arch;
    if (!arch)
        arch = "ViTModel";
    m->arch = 0;
    for (size_t i = 0; i < NKNOWN; i++)
        if (strcmp(mt, known[i].model_type) == 0 &&
            strcmp(arch, known[i].arch) == 0) {
            m->arch = known[i].id;
            m->family = known[i].fam;
            m->distilled = known[i].distilled;
        }
    if (!m->arch) {
        char list[1024] = "";
        for (size_t i = 0, at = 0; i < NKNOWN && at < sizeof list; i++)
            at += (size_t)snprintf(list + at, sizeof list - at, "%s%s",
                                   i == 0 ? "" : i + 1 < NKNOWN ? ", " : " and ",
                                   known[i].arch);
        st = vit__fail(err, VIT_E_UNSUPPORTED,
                       "%s: %s (model_type \"%s\") is not supported; vit runs "
                       "%s",
                       path, arch, mt, list);
        goto out;
    }
    m->architecture = strdup(arch);
    if (!m->architecture) {
        st = vit__fail(err, VIT_E_NOMEM, "out of memory");
        goto out;
    }
    if (m->arch == VIT_ARCH_VIT_CLASSIFIER || m->arch == VIT_ARCH_VIT_MODEL) {
        st = read_image_model(m, cfg, path, err);
        goto out;
    }
    if (m->family == FAM_SIGLIP) {
        st = read_siglip(m, cfg, path, err);
        goto out;
    }
    /* CLIP: projection_dim from the top level of a CLIPModel, or of the
     * single tower's own config. */
    m->has_vision = m->arch != VIT_ARCH_CLIP_TEXT;
    m->has_text = m->arch != VIT_ARCH_CLIP_VISION;
    m->vis.qkv_bias = m->txt.qkv_bias = 1;
    json_t *vc = cfg, *tc = cfg;
    if (m->arch == VIT_ARCH_CLIP) {
        if (!(vc = sub_config(cfg, "vision_config", path, err)) ||
            !(tc = sub_config(cfg, "text_config", path, err))) {
            st = VIT_E_CONFIG;
            goto out;
        }
    }
    double ls;
    if ((st = vit__cfg_int(cfg, path, "projection_dim", 512, 1, CFG_MAX_DIM,
                           &m->proj_dim, err)) ||
        (st = vit__cfg_float(cfg, path, "logit_scale_init_value", 2.6592, &ls,
                             err)))
        goto out;
    m->vis.nprefix = 1;
    if (m->has_vision && (st = read_vision(vc, path, &m->vis, 1, 0, err)))
        goto out;
    if (m->has_text && (st = read_text(tc, path, &m->txt, 0, err)))
        goto out;
out:
    json_decref(cfg);
    return st;
}
