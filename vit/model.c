/*
 * The models and the library's public entry points for them: reading
 * config.json of a `google/vit-*`, `facebook/deit-*`, `facebook/dinov2-*`
 * or `openai/clip-*` style directory, binding ViT, DeiT and DINOv2 (as
 * classifiers and base models), CLIPModel and the separate CLIP towers to
 * their checkpoint tensors, the per-thread state and its arena, and the
 * forward passes behind classify, embed and match.
 *
 * Dimension legend: B batch, T tokens, D hidden size, L labels,
 * E embedding (projection or pooler) size.
 */
#include "vit/vit_impl.h"

#include <cblas.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

/* The families of image models on the ViT core, which differ in their
 * tensor names, prefix tokens and heads. */
typedef enum {
    FAM_VIT,
    FAM_DEIT,
    FAM_DINOV2,
    FAM_DINOV2_REG,
    FAM_CLIP,
    FAM_SIGLIP
} vit_family;

/* SigLIP's vision head: a learned probe attending over the patch tokens
 * (nn.MultiheadAttention), then a layernorm and an MLP with a residual. */
typedef struct {
    const float *probe;        /* (D) */
    const float *in_w, *in_b;  /* (3D, D), (3D): query, key, value */
    const float *out_w, *out_b;
    const float *ln_w, *ln_b;
    const float *w1, *b1, *w2, *b2; /* (F, D), (F), (D, F), (D) */
} vit__map_head;

struct vit_model {
    vit_options opt;
    vit__weights *w;
    vit_arch arch;
    char *architecture;
    vit_family family;
    int distilled;             /* DeiT with its distillation head */
    int swiglu;                /* DINOv2's use_swiglu_ffn */
    int pos_gh, pos_gw;        /* the grid position embeddings were
                                  trained at (DINOv2 resizes them) */
    int has_vision, has_text;
    vit__vision vis;
    vit__text txt;
    /* ViT heads */
    int num_labels;
    char **labels;             /* num_labels */
    int head_pair;             /* the classifier reads two tokens: 1 the
                                  class and distillation tokens (DeiT), 2
                                  the class token and the mean of the
                                  patches (DINOv2); 0: the class token */
    const float *head_w;       /* (L, D), or (L, 2D) with head_pair */
    const float *head_b;       /* (L) */
    int pool_dim;              /* E of a ViTModel pooler, else 0 */
    vit__act pool_act;
    const float *pool_w;       /* (E, D) */
    const float *pool_b;       /* (E) */
    /* CLIP and SigLIP heads */
    int proj_dim;              /* E */
    const float *vproj;        /* (E, D_vision) visual_projection */
    vit__map_head map;         /* SigLIP's vision head instead */
    const float *tproj;        /* (E, D_text) text_projection, or SigLIP's
                                  text head */
    const float *tproj_b;      /* (E) SigLIP's text head's bias, else NULL */
    float logit_scale;         /* exp of the stored value */
    float logit_bias;          /* SigLIP's, else 0 */
    txt_tokenizer *tok;
    int tok_mask;              /* the tokenizer returns an attention mask,
                                  which SigLIP's text tower then applies */
    vit__processor proc;
};

struct vit_state {
    const vit_model *m;
    int max_batch;
    float *arena;
    float *x;        /* (B, T, D): the residual stream of either tower */
    float *patches;  /* (B * T, C * P * P) im2col, over the scratch */
    float *cls;      /* (B, D) pooled tokens, or (B, 2D) a two-token
                        classifier's input */
    float *head;     /* (B, max(L, E)) */
    int32_t *ids;    /* (B, T_text) */
    float *scratch;  /* what vit__scratch_carve divides, for either tower */
    vit__scratch s;  /* the vision tower's division of it */
    vit__pool *pool;
    vit__bctx *bctx; /* VIT_PRECISION_BF16 through oneDNN, else NULL */
    vit__prof *prof; /* one per thread */
};

_Static_assert(VIT_PROF_N == VIT_PROFILE_OPS, "profile kinds");

vit_options vit_options_default(void)
{
    img_limits lim = img_limits_default();
    vit_options o = {
        .max_batch = 8,
        .max_width = lim.max_width,
        .max_height = lim.max_height,
        .max_pixels = lim.max_pixels,
        .max_file_bytes = lim.max_bytes,
        .exif_transpose = 1,
    };
    return o;
}

vit_status vit_cpu_path(const char **path, char *detail, size_t n,
                        vit_error *err)
{
    if (path)
        *path = cpu_isa_name(cpu_get()->isa);
    if (detail && n)
        cpu_describe(detail, n);
    const char *e = cpu_isa_error();
    return e ? vit__fail(err, VIT_E_ARG, "%s", e) : VIT_OK;
}

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

static vit_status read_config(vit_model *m, const char *dir, vit_error *err)
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
    float *w = vit__weights_alloc(m->w, (size_t)L * 2 * D, err);
    float *b = w ? vit__weights_alloc(m->w, (size_t)L, err) : NULL;
    if (!b)
        return VIT_E_NOMEM;
    for (int l = 0; l < L; l++) {
        for (int k = 0; k < D; k++) {
            w[(size_t)l * 2 * D + k] = 0.5f * cw[(size_t)l * D + k];
            w[(size_t)l * 2 * D + D + k] = 0.5f * dw[(size_t)l * D + k];
        }
        b[l] = 0.5f * (cb[l] + db[l]);
    }
    m->head_pair = 1;
    m->head_w = w;
    m->head_b = b;
    return VIT_OK;
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

/* ---- load / free / info ---- */

static vit_status load_preprocessor(vit_model *m, const char *dir,
                                    vit_error *err)
{
    vit__vision *v = &m->vis;
    int dino = m->family == FAM_DINOV2 || m->family == FAM_DINOV2_REG;
    vit__proc_kind kind = m->family == FAM_DINOV2_REG ? VIT_PROC_NONE
                          : m->family == FAM_CLIP || dino ? VIT_PROC_CLIP
                          : m->family == FAM_SIGLIP       ? VIT_PROC_SIGLIP
                          : m->family == FAM_DEIT         ? VIT_PROC_DEIT
                                                          : VIT_PROC_VIT;
    /* DINOv2 runs at the size its processor makes, its positions resized
     * to that grid (bind_dino_pos). */
    vit_status st =
        vit__openclip_dir(dir)
            ? vit__openclip_processor(
                  dir, v->Hi, v->Wi,
                  m->opt.preprocess == VIT_PREPROCESS_TORCHVISION, &m->proc,
                  err)
            : vit__read_preprocessor(dir, kind, dino ? 0 : v->Hi,
                                     dino ? 0 : v->Wi, &m->proc, err);
    int h, w;
    if (st == VIT_OK && dino && vit__processor_size(&m->proc, &h, &w)) {
        char path[4096];
        snprintf(path, sizeof path, "%s/preprocessor_config.json", dir);
        v->Hi = h;
        v->Wi = w;
        st = vit__vision_geometry(v, path, err);
    }
    m->proc.cfg.backend = m->opt.preprocess == VIT_PREPROCESS_TORCHVISION
                              ? IMG_BACKEND_TORCHVISION
                              : IMG_BACKEND_PIL;
    m->opt.convert_rgb = m->proc.convert_rgb;
    img_filter f = m->proc.cfg.resample;
    if (st == VIT_OK && m->proc.cfg.backend == IMG_BACKEND_TORCHVISION &&
        m->proc.cfg.do_resize && (f == IMG_BOX || f == IMG_HAMMING))
        st = vit__fail(err, VIT_E_UNSUPPORTED,
                       "%s/preprocessor_config.json: torchvision has no %s "
                       "filter (transformers' torchvision processor fails on "
                       "it too); preprocess with pil",
                       dir, f == IMG_BOX ? "box" : "hamming");
    return st;
}

/* Whether the tokenizer of `dir` returns an attention mask, as
 * tokenizer_config.json's model_input_names says (the tokenizer classes'
 * default, when it says nothing, has one). SigLIP's hub repositories list
 * input_ids alone, so transformers runs their text tower on the padding
 * too; one saved by transformers 5 lists the mask, and it is applied. */
static int tokenizer_masks(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    /* JSON_DECODE_INT_AS_REAL: Gemma's configs say model_max_length
     * 1e30 as a 31-digit integer, which jansson otherwise refuses. */
    json_t *o = json_load_file(path, JSON_DECODE_INT_AS_REAL, NULL);
    json_t *names = json_object_get(o, "model_input_names");
    int mask = 1;
    if (json_is_array(names)) {
        mask = 0;
        for (size_t i = 0; i < json_array_size(names); i++)
            if (json_is_string(json_array_get(names, i)) &&
                strcmp(json_string_value(json_array_get(names, i)),
                       "attention_mask") == 0)
                mask = 1;
    }
    json_decref(o);
    return mask;
}

/* A text tower's tokenizer: tokenizer.json, vocab.json + merges.txt
 * (CLIP's), or spiece.model (SigLIP's). A directory with none still loads
 * (token ids can be embedded); only vit_embed_texts then fails, saying
 * what is missing. */
static vit_status load_tokenizer(vit_model *m, const char *dir, vit_error *err)
{
    static const char *const files[] = {"tokenizer.json", "vocab.json",
                                        "spiece.model"};
    int found = 0;
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        found |= access(path, F_OK) == 0;
    }
    if (!found)
        return VIT_OK;
    char msg[sizeof err->msg];
    txt_status ts = txt_tokenizer_load(dir, &m->tok, msg, sizeof msg);
    if (ts != TXT_OK)
        return vit__fail(err, ts == TXT_E_NOMEM ? VIT_E_NOMEM : VIT_E_CONFIG,
                         "%s", msg);
    /* SigLIP's checkpoints come with SentencePiece's Unigram (SigLIP) or
     * Gemma's byte-fallback BPE (SigLIP 2's fixed-resolution ones); CLIP's
     * with its byte-level BPE. */
    txt_kind k = txt_kind_of(m->tok);
    if ((k != TXT_KIND_CLIP) != (m->family == FAM_SIGLIP))
        return vit__fail(err, VIT_E_CONFIG,
                         "%s: the tokenizer is %s's but the model is %s",
                         dir,
                         k == TXT_KIND_SIGLIP  ? "SigLIP"
                         : k == TXT_KIND_GEMMA ? "Gemma (SigLIP 2)"
                                               : "CLIP",
                         m->architecture);
    /* open_clip cleans texts before CLIP's BPE (text/clean.c). */
    txt_set_openclip_clean(m->tok, vit__openclip_tokenizer(dir));
    m->tok_mask = tokenizer_masks(dir);
    if (m->tok_mask && txt_pads_left(m->tok) && m->family == FAM_SIGLIP)
        return vit__fail(err, VIT_E_UNSUPPORTED,
                         "%s: a tokenizer that pads on the left and returns "
                         "an attention mask is not supported for %s",
                         dir, m->architecture);
    return VIT_OK;
}

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
    if (m->opt.precision != VIT_PRECISION_FP32 &&
        m->opt.precision != VIT_PRECISION_INT8 &&
        m->opt.precision != VIT_PRECISION_BF16) {
        st = vit__fail(err, VIT_E_ARG,
                       "unknown precision %d (VIT_PRECISION_FP32, _INT8 or "
                       "_BF16)",
                       (int)m->opt.precision);
        goto fail;
    }
    if ((st = vit_cpu_path(NULL, NULL, 0, err)) != VIT_OK)
        goto fail;
    if (m->opt.preprocess != VIT_PREPROCESS_PIL &&
        m->opt.preprocess != VIT_PREPROCESS_TORCHVISION) {
        st = vit__fail(err, VIT_E_ARG, "unknown preprocessing backend %d",
                       (int)m->opt.preprocess);
        goto fail;
    }
    m->opt.convert_rgb = 0;
    if ((st = read_config(m, dir, err)) ||
        (m->has_vision && (st = load_preprocessor(m, dir, err))) ||
        (st = vit__openclip_dir(dir) ? vit__openclip_weights(dir, &m->w, err)
                                     : vit__weights_open(dir, &m->w, err)))
        goto fail;
    st = m->family == FAM_SIGLIP ? bind_siglip(m, err)
         : m->family == FAM_CLIP ? bind_clip(m, err)
                                 : bind_vit(m, err);
    if (st != VIT_OK) {
        /* Name the directory: the tensor-level message alone does not say
         * which model was being loaded. */
        if (err) {
            char inner[sizeof err->msg];
            memcpy(inner, err->msg, sizeof inner);
            vit__fail(err, st, "%s: %s", dir, inner);
        }
        goto fail;
    }
    if (m->opt.precision == VIT_PRECISION_INT8 &&
        ((m->has_vision &&
          (st = vit__encoder_quantize(&m->vis.enc, m->w, err))) ||
         (m->has_text &&
          (st = vit__encoder_quantize(&m->txt.enc, m->w, err)))))
        goto fail;
    if (m->opt.precision == VIT_PRECISION_BF16 &&
        ((m->has_vision && (st = vit__encoder_bf16(&m->vis.enc, m->w, err))) ||
         (m->has_text && (st = vit__encoder_bf16(&m->txt.enc, m->w, err)))))
        goto fail;
    if (m->has_text && (st = load_tokenizer(m, dir, err)))
        goto fail;
    m->opt.decode_min_side =
        m->opt.fast_decode && m->has_vision ? img_preprocess_min_side(&m->proc.cfg)
                                            : 0;
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
    vit__encoder_free(&m->vis.enc);
    vit__encoder_free(&m->txt.enc);
    vit__weights_free(m->w);
    for (int i = 0; i < m->num_labels && m->labels; i++)
        free(m->labels[i]);
    free(m->labels);
    free(m->architecture);
    txt_tokenizer_free(m->tok);
    free(m);
}

static int embed_dim(const vit_model *m)
{
    if (m->family == FAM_CLIP || m->family == FAM_SIGLIP)
        return m->proj_dim;
    return m->pool_dim ? m->pool_dim : m->vis.D;
}

void vit_model_get_info(const vit_model *m, vit_model_info *info)
{
    memset(info, 0, sizeof *info);
    const vit__encoder *e = m->has_vision ? &m->vis.enc : &m->txt.enc;
    info->arch = m->arch;
    info->architecture = m->architecture;
    info->has_vision = m->has_vision;
    info->has_text = m->has_text;
    info->has_tokenizer = m->tok != NULL;
    if (m->has_vision) {
        info->channels = m->vis.C;
        info->image_h = m->vis.Hi;
        info->image_w = m->vis.Wi;
        info->patch_size = m->vis.P;
    }
    info->num_labels = m->arch == VIT_ARCH_VIT_CLASSIFIER ? m->num_labels : 0;
    info->embed_dim = embed_dim(m);
    info->hidden_size = e->D;
    info->num_layers = e->L;
    info->num_heads = e->H;
    info->mlp_size = e->F;
    info->text_max_len = m->has_text ? m->txt.Tmax : 0;
    info->logit_scale = m->logit_scale;
}

int vit_model_image_tokens(const vit_model *m)
{
    return m && m->has_vision ? m->vis.T : 0;
}

float vit_model_logit_bias(const vit_model *m)
{
    return m ? m->logit_bias : 0;
}

const char *vit_model_label(const vit_model *m, int id)
{
    if (!m || m->arch != VIT_ARCH_VIT_CLASSIFIER || id < 0 ||
        id >= m->num_labels)
        return NULL;
    return m->labels[id];
}

const vit_options *vit__model_options(const vit_model *m) { return &m->opt; }

const vit_options *vit_model_options(const vit_model *m) { return &m->opt; }

const vit__processor *vit__model_processor(const vit_model *m)
{
    return &m->proc;
}

/* ---- state ---- */

vit_status vit_state_new(const vit_model *m, vit_state **out, vit_error *err)
{
    if (!m || !out)
        return vit__fail(err, VIT_E_ARG, "vit_state_new: NULL argument");
    vit_state *s = calloc(1, sizeof *s);
    if (!s)
        return vit__fail(err, VIT_E_NOMEM, "out of memory");
    /* One arena serves both towers: each buffer is as large as the larger
     * tower needs, since a state runs one forward at a time. */
    int B = m->opt.max_batch;
    int threads = m->opt.threads > 0 ? m->opt.threads
                                     : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (threads < 1)
        threads = 1;
    if (threads > 256)
        threads = 256;
    size_t nx = 0, np = 0, nscr = 0, D = 0;
    if (m->has_vision) {
        const vit__vision *v = &m->vis;
        nx = (size_t)B * v->T * v->D;
        np = vit__vision_floats(v, B, threads);
        nscr = vit__scratch_floats(&v->enc, B, v->T, threads);
        D = (size_t)v->D;
    }
    if (m->has_text) {
        const vit__text *t = &m->txt;
        size_t tx = (size_t)B * t->Tmax * t->D;
        size_t ts = vit__scratch_floats(&t->enc, B, t->Tmax, threads);
        nx = tx > nx ? tx : nx;
        nscr = ts > nscr ? ts : nscr;
        D = (size_t)t->D > D ? (size_t)t->D : D;
    }
    size_t heads = (size_t)(m->num_labels > embed_dim(m) ? m->num_labels
                                                         : embed_dim(m));
    size_t nc = (size_t)B * D * (m->head_pair ? 2 : 1), nh = (size_t)B * heads;
    size_t nids = m->has_text ? (size_t)B * m->txt.Tmax : 0;
    /* The im2col buffer is done with before the encoder first writes its
     * scratch, so one region serves both. */
    size_t total = nx + nc + nh + nids + (np > nscr ? np : nscr);
    s->arena = malloc(total * sizeof(float));
    if (!s->arena) {
        free(s);
        return vit__fail(err, VIT_E_NOMEM,
                         "out of memory for a %zu MiB activation arena "
                         "(max_batch %d)",
                         total * sizeof(float) >> 20, B);
    }
    s->prof = calloc((size_t)threads, sizeof *s->prof);
    if (!s->prof || !(s->pool = vit__pool_new(threads))) {
        free(s->prof);
        free(s->arena);
        free(s);
        return vit__fail(err, VIT_E_NOMEM, "cannot start %d threads",
                         threads);
    }
    /* Each pool thread runs its own oneDNN products (bgemm.c). */
    if (m->vis.enc.bf16 || m->txt.enc.bf16) {
        vit_status st = vit__bctx_new(&s->bctx, threads, err);
        if (st != VIT_OK) {
            vit__pool_free(s->pool);
            free(s->prof);
            free(s->arena);
            free(s);
            return st;
        }
    }
    /* The pool splits every GEMM among its threads; OpenBLAS threading
     * them again would oversubscribe the cores. */
    openblas_set_num_threads(1);
    s->m = m;
    s->max_batch = B;
    s->x = s->arena;
    s->cls = s->x + nx;
    s->head = s->cls + nc;
    s->ids = (int32_t *)(s->head + nh);
    s->scratch = s->head + nh + nids;
    s->patches = s->scratch;
    if (m->has_vision)
        vit__scratch_carve(&s->s, s->scratch, &m->vis.enc, B, m->vis.T);
    s->s.pool = s->pool;
    s->s.bctx = s->bctx;
    /* The text tower carves the same scratch at its own sizes per call. */
    *out = s;
    return VIT_OK;
}

void vit_state_free(vit_state *s)
{
    if (!s)
        return;
    vit__pool_free(s->pool);
    vit__bctx_free(s->bctx);
    free(s->prof);
    free(s->arena);
    free(s);
}

const vit_model *vit__state_model(const vit_state *s) { return s->m; }

void vit_state_profile_enable(vit_state *s, int on)
{
    if (!s)
        return;
    memset(s->prof, 0, (size_t)vit__pool_size(s->pool) * sizeof *s->prof);
    s->s.prof = on ? s->prof : NULL;
}

int vit_state_profile_get(const vit_state *s, vit_profile_entry *out)
{
    static const char *names[VIT_PROF_N] = {
        "patch embedding", "layernorm", "matmul",
        "attention",       "softmax",   "activation",
        "quantize",
    };
    int n = vit__pool_size(s->pool);
    for (int k = 0; k < VIT_PROF_N; k++) {
        out[k] = (vit_profile_entry){.op = names[k]};
        for (int w = 0; w < n; w++) {
            out[k].thread_seconds += s->prof[w].sec[k];
            out[k].gflop += s->prof[w].flop[k] * 1e-9;
            out[k].calls += s->prof[w].calls[k];
        }
    }
    return n;
}
const float *vit__state_hidden(const vit_state *s) { return s->x; }

/* ---- forward ---- */

void vit__forward_hidden(vit_state *s, const float *pixels, int B)
{
    vit__vision_forward(&s->m->vis, pixels, B, s->x, s->patches, &s->s);
}

static void gather_cls(vit_state *s, int B)
{
    int D = s->m->vis.D, T = s->m->vis.T;
    for (int b = 0; b < B; b++)
        memcpy(s->cls + (size_t)b * D, s->x + (size_t)b * T * D,
               (size_t)D * sizeof(float));
}

/* The k best of L logits, scored by their softmax, or each by its sigmoid
 * (SigLIP's zero-shot labels, which are not exclusive). */
static void top_k(const float *logits, int L, int k, vit_prediction *out,
                  char *const *labels, float *probs, int sigmoid)
{
    memcpy(probs, logits, (size_t)L * sizeof *probs);
    if (sigmoid)
        for (int i = 0; i < L; i++)
            probs[i] = 1.0f / (1.0f + expf(-probs[i]));
    else
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
        out[r].label = labels[best];
        probs[best] = -1;
    }
    for (int r = kk; r < k; r++)
        out[r] = (vit_prediction){.id = -1, .score = 0, .label = NULL};
}

static vit_status need_vision(const vit_state *s, const void *pixels, int n,
                              vit_error *err)
{
    if (!s || (!pixels && n > 0) || n < 0)
        return vit__fail(err, VIT_E_ARG, "NULL state or pixels");
    if (!s->m->has_vision)
        return vit__fail(err, VIT_E_NO_HEAD,
                         "%s has no vision tower; it embeds text only",
                         s->m->architecture);
    return VIT_OK;
}

/* Runs the vision tower over n images in chunks of max_batch, calling
 * `head` on each chunk's pooled tokens (s->cls, B x D_vision). */
typedef void (*vision_head)(vit_state *s, int i0, int B, void *ctx);

static void vision_chunks(vit_state *s, const float *pixels, int n,
                          vision_head head, void *ctx)
{
    const vit__vision *v = &s->m->vis;
    size_t per = (size_t)v->C * v->Hi * v->Wi;
    for (int i0 = 0; i0 < n; i0 += s->max_batch) {
        int B = n - i0 < s->max_batch ? n - i0 : s->max_batch;
        vit__forward_hidden(s, pixels + (size_t)i0 * per, B);
        gather_cls(s, B);
        head(s, i0, B, ctx);
    }
}

typedef struct {
    int top_k;
    vit_prediction *out;
    float *logits;
    float *probs;
    const vit_zeroshot *z;
} classify_ctx;

/* A two-token classifier's input, (B, 2D): the class token beside the
 * distillation token (DeiT) or beside the mean of the patch tokens, in
 * the order transformers sums them (DINOv2). */
static void gather_pair(vit_state *s, int B)
{
    const vit__vision *v = &s->m->vis;
    int D = v->D, T = v->T;
    for (int b = 0; b < B; b++) {
        const float *x = s->x + (size_t)b * T * D;
        float *dst = s->cls + (size_t)b * 2 * D;
        memcpy(dst, x, (size_t)D * sizeof *dst);
        if (s->m->head_pair == 1) {
            memcpy(dst + D, x + D, (size_t)D * sizeof *dst);
            continue;
        }
        for (int d = 0; d < D; d++) {
            float sum = 0;
            for (int t = v->nprefix; t < T; t++)
                sum += x[(size_t)t * D + d];
            dst[D + d] = sum / (float)v->NP;
        }
    }
}

static void classify_head(vit_state *s, int i0, int B, void *p)
{
    classify_ctx *c = p;
    const vit_model *m = s->m;
    int L = m->num_labels, K = m->vis.D;
    if (m->head_pair) {
        gather_pair(s, B);
        K *= 2;
    }
    vit__linear(s->head, s->cls, m->head_w, m->head_b, B, L, K);
    for (int b = 0; b < B; b++) {
        const float *lg = s->head + (size_t)b * L;
        if (c->logits)
            memcpy(c->logits + (size_t)(i0 + b) * L, lg,
                   (size_t)L * sizeof *lg);
        if (c->top_k > 0)
            top_k(lg, L, c->top_k, c->out + (size_t)(i0 + b) * c->top_k,
                  m->labels, c->probs, 0);
    }
}

vit_status vit_classify_pixels(vit_state *s, const float *pixels, int n,
                               int top_k_n, vit_prediction *out,
                               float *logits, vit_error *err)
{
    vit_status st = need_vision(s, pixels, n, err);
    if (st)
        return st;
    const vit_model *m = s->m;
    if (m->arch != VIT_ARCH_VIT_CLASSIFIER)
        return vit__fail(err, VIT_E_NO_HEAD,
                         "%s has no classification head; use embeddings%s",
                         m->architecture,
                         m->family == FAM_CLIP || m->family == FAM_SIGLIP
                             ? ", or zero-shot labels"
                             : "");
    if (top_k_n < 0 || (top_k_n > 0 && !out))
        return vit__fail(err, VIT_E_ARG, "bad top_k or NULL output");
    classify_ctx c = {top_k_n, out, logits, NULL, NULL};
    c.probs = malloc((size_t)m->num_labels * sizeof *c.probs);
    if (!c.probs)
        return vit__fail(err, VIT_E_NOMEM, "out of memory");
    vision_chunks(s, pixels, n, classify_head, &c);
    free(c.probs);
    return vit__bctx_status(s->bctx, err);
}

/* SigLIP's attention-pooling head over the B images' patch tokens (the
 * state's stream, final-layernormed) into dst (B, D): the probe's query
 * against every token's key and value, per head, then the output
 * projection, and the MLP on its layernorm added to it. The keys and
 * values take the encoder's scratch, free once the encoder is done. */
static void map_head(vit_state *s, int B, float *dst)
{
    const vit_model *m = s->m;
    const vit__map_head *h = &m->map;
    const vit__vision *v = &m->vis;
    int D = v->D, T = v->T, H = v->enc.H, dh = D / H, F = v->enc.F;
    float *K = s->s.k, *V = s->s.v, *q = s->s.q, *ctx = s->s.ctx;
    float *ff = s->s.ff, *p = s->s.scores;
    vit__pool_linear(s->pool, K, s->x, h->in_w + (size_t)D * D, h->in_b + D,
                     B * T, D, D);
    vit__pool_linear(s->pool, V, s->x, h->in_w + (size_t)2 * D * D,
                     h->in_b + 2 * D, B * T, D, D);
    vit__linear(q, h->probe, h->in_w, h->in_b, 1, D, D);
    float scale = 1.0f / sqrtf((float)dh);
    for (int b = 0; b < B; b++)
        for (int hd = 0; hd < H; hd++) {
            const float *kb = K + (size_t)b * T * D + (size_t)hd * dh;
            const float *vb = V + (size_t)b * T * D + (size_t)hd * dh;
            for (int t = 0; t < T; t++) {
                float acc = 0;
                for (int d = 0; d < dh; d++)
                    acc += q[hd * dh + d] * scale * kb[(size_t)t * D + d];
                p[t] = acc;
            }
            vit__softmax(p, 1, T);
            float *c = ctx + (size_t)b * D + (size_t)hd * dh;
            for (int d = 0; d < dh; d++) {
                float acc = 0;
                for (int t = 0; t < T; t++)
                    acc += p[t] * vb[(size_t)t * D + d];
                c[d] = acc;
            }
        }
    vit__linear(dst, ctx, h->out_w, h->out_b, B, D, D);
    vit__layernorm(q, dst, h->ln_w, h->ln_b, B, D, v->enc.eps);
    vit__linear(ff, q, h->w1, h->b1, B, F, D);
    vit__activation(ff, (size_t)B * F, v->enc.act);
    vit__sgemm_op op = {{h->w2}, {h->b2}, {dst}, D, D, 1, 0};
    vit__sgemm(&op, ff, B, F, 0, D, NULL);
}

/* The B images' embeddings from the state's forward, into dst (B, E): a
 * projection of the class token (CLIP), the attention-pooling head
 * (SigLIP), a pooler, or the class token itself. */
static void image_embeds(vit_state *s, int B, float *dst)
{
    const vit_model *m = s->m;
    int D = m->vis.D, E = embed_dim(m);
    if (m->family == FAM_SIGLIP) {
        map_head(s, B, dst);
    } else if (m->family == FAM_CLIP) {
        vit__linear(dst, s->cls, m->vproj, NULL, B, E, D);
    } else if (m->pool_dim) {
        vit__linear(dst, s->cls, m->pool_w, m->pool_b, B, E, D);
        vit__activation(dst, (size_t)B * E, m->pool_act);
    } else {
        memcpy(dst, s->cls, (size_t)B * D * sizeof *dst);
    }
}

static void embed_head(vit_state *s, int i0, int B, void *p)
{
    image_embeds(s, B, (float *)p + (size_t)i0 * embed_dim(s->m));
}

vit_status vit_embed_pixels(vit_state *s, const float *pixels, int n,
                            float *out, vit_error *err)
{
    vit_status st = need_vision(s, pixels, n, err);
    if (st)
        return st;
    if (!out)
        return vit__fail(err, VIT_E_ARG, "NULL output");
    vision_chunks(s, pixels, n, embed_head, out);
    return vit__bctx_status(s->bctx, err);
}

/* ---- text ---- */

static vit_status need_text(const vit_state *s, vit_error *err)
{
    if (!s)
        return vit__fail(err, VIT_E_ARG, "NULL state");
    if (!s->m->has_text)
        return vit__fail(err, VIT_E_NO_HEAD,
                         "%s has no text tower; it embeds images only",
                         s->m->architecture);
    return VIT_OK;
}

vit_status vit__embed_ids(vit_state *s, const int32_t *ids, const int *lens,
                          int n, int T, float *out, vit_error *err)
{
    vit_status st = need_text(s, err);
    if (st)
        return st;
    const vit_model *m = s->m;
    const vit__text *t = &m->txt;
    if (T < 1 || T > t->Tmax)
        return vit__fail(err, VIT_E_ARG,
                         "%d tokens per text; the model takes 1 to %d", T,
                         t->Tmax);
    for (size_t i = 0; i < (size_t)n * T; i++)
        if (ids[i] < 0 || ids[i] >= t->V)
            return vit__fail(err, VIT_E_ARG,
                             "token id %d is outside the model's vocabulary "
                             "of %d",
                             ids[i], t->V);
    vit__scratch sc;
    int E = m->proj_dim;
    for (int i0 = 0; i0 < n; i0 += s->max_batch) {
        int B = n - i0 < s->max_batch ? n - i0 : s->max_batch;
        vit__scratch_carve(&sc, s->scratch, &t->enc, B, T);
        sc.pool = s->pool;
        sc.bctx = s->bctx;
        sc.prof = s->s.prof;
        vit__text_forward(t, ids + (size_t)i0 * T, lens ? lens + i0 : NULL, B,
                          T, s->x, s->cls, &sc);
        vit__linear(out + (size_t)i0 * E, s->cls, m->tproj, m->tproj_b, B, E,
                    t->D);
    }
    /* A failed oneDNN product leaves its outputs unwritten: the error,
     * not the embeddings, is the answer. */
    return vit__bctx_status(s->bctx, err);
}

vit_status vit_embed_texts(vit_state *s, const char *const *texts, int n,
                           float *out, vit_error *err)
{
    vit_status st = need_text(s, err);
    if (st)
        return st;
    if (n < 0 || (n > 0 && (!texts || !out)))
        return vit__fail(err, VIT_E_ARG, "NULL texts or output");
    const vit_model *m = s->m;
    if (!m->tok)
        return vit__fail(err, VIT_E_CONFIG,
                         "the model directory has no tokenizer (tokenizer.json, "
                         "vocab.json and merges.txt, or spiece.model)");
    int Tm = m->txt.Tmax, E = m->proj_dim;
    /* Tokenize a chunk, pad it to its longest text (the causal mask keeps
     * padding from reaching the pooled token), and run it. */
    enum { CHUNK = 64 };
    int cap = s->max_batch < CHUNK ? s->max_batch : CHUNK;
    for (int i0 = 0; i0 < n; i0 += cap) {
        int B = n - i0 < cap ? n - i0 : cap;
        int T = 1, len[CHUNK];
        int32_t *ids = s->ids;
        for (int b = 0; b < B; b++) {
            if (!texts[i0 + b])
                return vit__fail(err, VIT_E_ARG, "text %d is NULL", i0 + b);
            len[b] = txt_encode(m->tok, texts[i0 + b], strlen(texts[i0 + b]),
                                ids + (size_t)b * Tm, Tm);
            if (len[b] < 0)
                return vit__fail(err, VIT_E_NOMEM,
                                 "out of memory tokenizing text %d", i0 + b);
            T = len[b] > T ? len[b] : T;
        }
        /* SigLIP's texts are padded to the full length, as its processor
         * pads them (padding="max_length"): it pools at the last token. */
        if (m->txt.siglip)
            T = Tm;
        /* Compact the rows from stride Tm to stride T, padding each with
         * the tokenizer's pad token, as CLIPProcessor(padding=True) does:
         * the causal mask keeps padding from the pooled token, and with
         * the argmax convention a pad id equal to eos still pools at the
         * first eos. */
        int32_t pad = txt_pad_id(m->tok) >= 0 ? txt_pad_id(m->tok)
                                              : m->txt.pad_id;
        /* Gemma's tokenizer pads on the left unless its config says
         * otherwise, and transformers then runs the text at the end. */
        int left = txt_pads_left(m->tok);
        for (int b = 0; b < B; b++) {
            int32_t *src = ids + (size_t)b * Tm, *dst = ids + (size_t)b * T;
            int at = left ? T - len[b] : 0;
            memmove(dst + at, src, (size_t)len[b] * sizeof *dst);
            for (int j = 0; j < T - len[b]; j++)
                dst[left ? j : len[b] + j] = pad;
        }
        if ((st = vit__embed_ids(s, ids, m->tok_mask ? len : NULL, B, T,
                                 out + (size_t)i0 * E, err)))
            return st;
    }
    return VIT_OK;
}

/* ---- matching and zero-shot ---- */

void vit_l2_normalize(float *v, int n, int dim)
{
    for (int i = 0; i < n; i++) {
        float *r = v + (size_t)i * dim;
        double ss = 0;
        for (int d = 0; d < dim; d++)
            ss += (double)r[d] * r[d];
        float inv = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
        for (int d = 0; d < dim; d++)
            r[d] *= inv;
    }
}

vit_status vit_match(const vit_model *m, const float *image_embeds, int n,
                     const float *text_embeds, int k, float *logits,
                     float *probs, vit_error *err)
{
    if (!m || n < 0 || k < 1 || (n && (!image_embeds || !text_embeds)))
        return vit__fail(err, VIT_E_ARG, "vit_match: bad arguments");
    if (m->arch != VIT_ARCH_CLIP && m->arch != VIT_ARCH_SIGLIP)
        return vit__fail(err, VIT_E_NO_HEAD,
                         "%s has no logit_scale; matching needs a CLIPModel "
                         "or a SiglipModel",
                         m->architecture);
    int E = m->proj_dim;
    for (int i = 0; i < n; i++) {
        const float *a = image_embeds + (size_t)i * E;
        double na = 0;
        for (int d = 0; d < E; d++)
            na += (double)a[d] * a[d];
        for (int j = 0; j < k; j++) {
            const float *b = text_embeds + (size_t)j * E;
            double dot = 0, nb = 0;
            for (int d = 0; d < E; d++) {
                dot += (double)a[d] * b[d];
                nb += (double)b[d] * b[d];
            }
            double c = (na > 0 && nb > 0) ? dot / sqrt(na * nb) : 0;
            float lg = (float)(m->logit_scale * c) + m->logit_bias;
            if (logits)
                logits[(size_t)i * k + j] = lg;
            if (probs)
                probs[(size_t)i * k + j] =
                    m->arch == VIT_ARCH_SIGLIP ? 1.0f / (1.0f + expf(-lg)) : lg;
        }
        if (probs && m->arch != VIT_ARCH_SIGLIP)
            vit__softmax(probs + (size_t)i * k, 1, k);
    }
    return VIT_OK;
}

struct vit_zeroshot {
    const vit_model *m;
    int n;
    char **labels;
    float *embeds;  /* (n, E), L2-normalized */
};

void vit_zeroshot_free(vit_zeroshot *z)
{
    if (!z)
        return;
    for (int i = 0; i < z->n && z->labels; i++)
        free(z->labels[i]);
    free(z->labels);
    free(z->embeds);
    free(z);
}

/* Replaces each "{}" of tmpl with label. */
static char *fill_template(const char *tmpl, const char *label)
{
    size_t n = 1, ll = strlen(label);
    for (const char *p = tmpl; *p; p++)
        n += (p[0] == '{' && p[1] == '}') ? ll : 1;
    char *out = malloc(n), *o = out;
    if (!out)
        return NULL;
    for (const char *p = tmpl; *p; p++) {
        if (p[0] == '{' && p[1] == '}') {
            memcpy(o, label, ll);
            o += ll;
            p++;
        } else {
            *o++ = *p;
        }
    }
    *o = 0;
    return out;
}

vit_status vit_zeroshot_new(vit_state *s, const char *const *labels, int n,
                            const char *tmpl, vit_zeroshot **out,
                            vit_error *err)
{
    vit_status st = need_text(s, err);
    if (st)
        return st;
    if (!labels || n < 1 || !out)
        return vit__fail(err, VIT_E_ARG, "zero-shot needs at least one label");
    if (s->m->arch != VIT_ARCH_CLIP && s->m->arch != VIT_ARCH_SIGLIP)
        return vit__fail(err, VIT_E_NO_HEAD,
                         "zero-shot classification needs a CLIPModel or a "
                         "SiglipModel (both towers)");
    if (!tmpl)
        tmpl = "a photo of a {}.";
    int E = s->m->proj_dim;
    vit_zeroshot *z = calloc(1, sizeof *z);
    char **prompts = calloc((size_t)n, sizeof *prompts);
    if (!z || !prompts ||
        !(z->labels = calloc((size_t)n, sizeof *z->labels)) ||
        !(z->embeds = malloc((size_t)n * E * sizeof *z->embeds))) {
        st = vit__fail(err, VIT_E_NOMEM, "out of memory");
        goto out;
    }
    z->m = s->m;
    z->n = n;
    for (int i = 0; i < n; i++) {
        if (!labels[i]) {
            st = vit__fail(err, VIT_E_ARG, "label %d is NULL", i);
            goto out;
        }
        if (!(z->labels[i] = strdup(labels[i])) ||
            !(prompts[i] = fill_template(tmpl, labels[i]))) {
            st = vit__fail(err, VIT_E_NOMEM, "out of memory");
            goto out;
        }
    }
    if ((st = vit_embed_texts(s, (const char *const *)prompts, n, z->embeds,
                              err)))
        goto out;
    vit_l2_normalize(z->embeds, n, E);
    *out = z;
    z = NULL;
out:
    for (int i = 0; i < n && prompts; i++)
        free(prompts[i]);
    free(prompts);
    vit_zeroshot_free(z);
    return st;
}

static void zeroshot_head(vit_state *s, int i0, int B, void *p)
{
    classify_ctx *c = p;
    const vit_model *m = s->m;
    int E = m->proj_dim, L = c->z->n;
    float *emb = s->head; /* (B, E) */
    image_embeds(s, B, emb);
    for (int b = 0; b < B; b++) {
        float *row = c->probs; /* (L) logits, then reused by top_k */
        vit_match(m, emb + (size_t)b * E, 1, c->z->embeds, L, row, NULL,
                  NULL);
        if (c->logits)
            memcpy(c->logits + (size_t)(i0 + b) * L, row,
                   (size_t)L * sizeof *row);
        if (c->top_k > 0)
            top_k(row, L, c->top_k, c->out + (size_t)(i0 + b) * c->top_k,
                  c->z->labels, row + L, m->arch == VIT_ARCH_SIGLIP);
    }
}

vit_status vit_zeroshot_classify_pixels(vit_state *s, const vit_zeroshot *z,
                                        const float *pixels, int n, int top_k_n,
                                        vit_prediction *out, float *logits,
                                        vit_error *err)
{
    vit_status st = need_vision(s, pixels, n, err);
    if (st)
        return st;
    if (!z || z->m != s->m)
        return vit__fail(err, VIT_E_ARG,
                         "the label set belongs to another model");
    if (top_k_n < 0 || (top_k_n > 0 && !out))
        return vit__fail(err, VIT_E_ARG, "bad top_k or NULL output");
    classify_ctx c = {top_k_n, out, logits, NULL, z};
    c.probs = malloc(2 * (size_t)z->n * sizeof *c.probs);
    if (!c.probs)
        return vit__fail(err, VIT_E_NOMEM, "out of memory");
    vision_chunks(s, pixels, n, zeroshot_head, &c);
    free(c.probs);
    return vit__bctx_status(s->bctx, err);
}

/* ---- memory ---- */

#include <malloc.h> /* malloc_usable_size: what each block really holds */

/* The resident bytes of w's mappings in this process: the Rss of each
 * /proc/self/smaps area that starts inside one of them. */
static size_t mapped_resident(const vit__weights *w)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f)
        return 0;
    char line[512];
    size_t total = 0;
    int inside = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi, kib;
        /* An area's first line: "start-end perms offset dev inode path";
         * its fields' lines start with a name and a colon. */
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) {
            inside = 0;
            for (size_t i = 0; i < w->nmaps; i++) {
                uintptr_t a = (uintptr_t)w->maps[i].addr;
                if (lo >= a && lo < a + w->maps[i].len)
                    inside = 1;
            }
        } else if (inside && sscanf(line, "Rss: %lu kB", &kib) == 1) {
            total += (size_t)kib * 1024;
        }
    }
    fclose(f);
    return total;
}

void vit_state_memory(const vit_state *s, vit_memory *out)
{
    *out = (vit_memory){0};
    if (!s)
        return;
    const vit__weights *w = s->m->w;
    for (size_t i = 0; i < w->nmaps; i++)
        out->weights_mapped += w->maps[i].len;
    for (size_t i = 0; i < w->nowned; i++)
        out->weights_copied += malloc_usable_size(w->owned[i]);
    out->arena = malloc_usable_size(s->arena);
    out->weights_int8 = vit__encoder_int8_bytes(&s->m->vis.enc) +
                        vit__encoder_int8_bytes(&s->m->txt.enc);
    out->weights_bf16 = vit__encoder_bf16_bytes(&s->m->vis.enc) +
                        vit__encoder_bf16_bytes(&s->m->txt.enc);
    out->weights_dropped = w->dropped;
    out->weights_resident = mapped_resident(w);
}
