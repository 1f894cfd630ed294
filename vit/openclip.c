/*
 * open_clip's CLIPs as the hub holds them: open_clip_config.json (its
 * model_cfg and preprocess_cfg) and open_clip_model.safetensors, the
 * towers in open_clip's naming. The model is the CLIPModel the core runs,
 * so this file only translates: the config into the CLIPModel config it
 * describes, the preprocessing into the steps open_clip's image_transform
 * composes, and the tensor names into transformers' (views of the fused
 * query-key-value weights, the projections transposed, since open_clip
 * applies them as x @ P).
 *
 * What open_clip itself runs (open_clip_torch 3.3, model.py, transformer.py,
 * transform.py, tokenizer.py):
 *   - VisionTransformer: conv1 without bias, class_embedding, a learned
 *     positional_embedding, ln_pre, the resblocks (ln_1, nn.MultiheadAttention
 *     with one in_proj, ln_2, mlp c_fc / c_proj), ln_post on the class token
 *     (pool_type "tok"), then @ proj;
 *   - the text tower: token_embedding + positional_embedding, the resblocks
 *     under a causal mask, ln_final, pooled at the argmax of the ids (the
 *     end-of-text token, the largest id), then @ text_projection;
 *   - GELU, or QuickGELU where model_cfg says quick_gelu; layernorm eps
 *     1e-5; heads: vision width / head_width, text heads; the MLP
 *     int(width * mlp_ratio) wide;
 *   - logit_scale, applied as exp.
 * Every other variant a config can name changes the computation and is
 * refused, naming the field: timm or Hugging Face towers, the ResNets,
 * attentional pooling (CoCa's), other pool types, layer scale, no ln_pre,
 * custom attention blocks, SigLIP-style logit_bias, and so on.
 */
#include "vit/vit_impl.h"

#include <string.h>
#include <unistd.h>

#define OC_CONFIG "open_clip_config.json"
#define OC_WEIGHTS "open_clip_model.safetensors"
#define OC_BIN "open_clip_pytorch_model.bin"

static int exists(const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

int vit__openclip_dir(const char *dir)
{
    return !exists(dir, "config.json") && exists(dir, OC_CONFIG);
}

/* ---- the config ---- */

/* A field that must be absent, null, false, zero or `def` (a string):
 * anything else names a variant vit does not run. */
static vit_status refuse_set(json_t *o, const char *path, const char *tower,
                             const char *key, const char *def,
                             const char *what, vit_error *err)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v) || json_is_false(v) ||
        (json_is_number(v) && json_number_value(v) == 0) ||
        (def && json_is_string(v) && strcmp(json_string_value(v), def) == 0))
        return VIT_OK;
    if (json_is_object(v) && json_object_size(v) == 0)
        return VIT_OK;
    char *shown = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    vit__fail(err, VIT_E_UNSUPPORTED,
              "%s: %s%s%s is %s: %s is not supported (vit runs open_clip's "
              "ViT CLIPs: class-token and argmax pooling, linear "
              "projections)",
              path, tower, tower[0] ? "." : "", key, shown ? shown : "set",
              what);
    free(shown);
    return VIT_E_UNSUPPORTED;
}

/* Fields that must be left unset (refuse_set), with what each names. */
typedef struct {
    const char *key, *def, *what;
} oc_field;

static vit_status refuse_all(json_t *c, const char *path, const char *tower,
                             const oc_field *f, size_t n, vit_error *err)
{
    vit_status st = VIT_OK;
    for (size_t i = 0; i < n && !st; i++)
        st = refuse_set(c, path, tower, f[i].key, f[i].def, f[i].what, err);
    return st;
}

/* What the vision and text configs share: the block variants. */
static vit_status refuse_blocks(json_t *c, const char *path, const char *tower,
                                vit_error *err)
{
    static const oc_field fields[] = {
        {"ls_init_value", NULL, "layer scale"},
        {"act_kwargs", NULL, "a configured activation"},
        {"norm_kwargs", NULL, "a configured layernorm"},
        {"block_type", "default", "a custom attention block"},
        {"qk_norm", NULL, "query-key normalization"},
        {"scaled_cosine_attn", NULL, "scaled cosine attention"},
        {"scale_heads", NULL, "head scaling"},
        {"scale_attn_inner", NULL, "an inner attention layernorm"},
        {"scale_attn", NULL, "an attention layernorm"},
        {"scale_fc", NULL, "an MLP layernorm"},
        {"final_ln_after_pool", NULL, "the final layernorm after pooling"},
    };
    return refuse_all(c, path, tower, fields, sizeof fields / sizeof *fields,
                      err);
}

/* An integer field of an open_clip config, checked as open_clip uses it. */
static vit_status oc_int(json_t *o, const char *path, const char *tower,
                         const char *key, int def, int lo, int hi, int *out,
                         vit_error *err)
{
    char where[4352];
    snprintf(where, sizeof where, "%s%s", path, tower);
    return vit__cfg_int(o, where, key, def, lo, hi, out, err);
}

/* int(width * mlp_ratio), as open_clip sizes the MLP. */
static vit_status mlp_width(json_t *c, const char *where, int width, int *out,
                            vit_error *err)
{
    double r;
    vit_status st = vit__cfg_float(c, where, "mlp_ratio", 4.0, &r, err);
    if (st)
        return st;
    if (!(r > 0) || r * width > 4.0 * CFG_MAX_DIM)
        return vit__fail(err, VIT_E_CONFIG, "%s: mlp_ratio %g is out of range",
                         where, r);
    *out = (int)(width * r);
    return VIT_OK;
}

static vit_status vision_config(json_t *vc, const char *path, const char *act,
                                json_t *out, vit_error *err)
{
    static const oc_field fields[] = {
        {"timm_model_name", NULL, "a timm image tower"},
        {"attentional_pool", NULL, "attentional pooling"},
        {"pool_type", "tok", "pooling other than the class token"},
        {"no_ln_pre", NULL, "a tower without ln_pre"},
        {"pos_embed_type", "learnable", "fixed position embeddings"},
    };
    vit_status st;
    if ((st = refuse_all(vc, path, "vision_cfg", fields,
                         sizeof fields / sizeof *fields, err)) ||
        (st = refuse_blocks(vc, path, "vision_cfg", err)))
        return st;
    if (json_is_array(json_object_get(vc, "layers")))
        return vit__fail(err, VIT_E_UNSUPPORTED,
                         "%s: vision_cfg.layers is a list: the ResNet image "
                         "towers are not supported",
                         path);
    int width, layers, head_width, patch, mlp, ih, iw;
    char where[4352];
    snprintf(where, sizeof where, "%s: vision_cfg", path);
    if ((st = oc_int(vc, path, ": vision_cfg", "width", 768, 1, CFG_MAX_DIM,
                     &width, err)) ||
        (st = oc_int(vc, path, ": vision_cfg", "layers", 12, 0,
                     CFG_MAX_LAYERS, &layers, err)) ||
        (st = oc_int(vc, path, ": vision_cfg", "head_width", 64, 1,
                     CFG_MAX_DIM, &head_width, err)) ||
        (st = oc_int(vc, path, ": vision_cfg", "patch_size", 16, 1, 4096,
                     &patch, err)) ||
        (st = vit__cfg_size2(vc, where, "image_size", 224, &ih, &iw, err)) ||
        (st = mlp_width(vc, where, width, &mlp, err)))
        return st;
    if (width % head_width)
        return vit__fail(err, VIT_E_CONFIG,
                         "%s: width %d does not divide by head_width %d",
                         where, width, head_width);
    json_t *img = ih == iw ? json_integer(ih)
                           : json_pack("[ii]", ih, iw);
    json_object_set_new(out, "hidden_size", json_integer(width));
    json_object_set_new(out, "num_hidden_layers", json_integer(layers));
    json_object_set_new(out, "num_attention_heads",
                        json_integer(width / head_width));
    json_object_set_new(out, "intermediate_size", json_integer(mlp));
    json_object_set_new(out, "patch_size", json_integer(patch));
    json_object_set_new(out, "image_size", img);
    json_object_set_new(out, "hidden_act", json_string(act));
    json_object_set_new(out, "layer_norm_eps", json_real(1e-5));
    return VIT_OK;
}

static vit_status text_config(json_t *tc, const char *path, const char *act,
                              json_t *out, vit_error *err)
{
    static const oc_field fields[] = {
        {"hf_model_name", NULL, "a Hugging Face text tower"},
        {"embed_cls", NULL, "a class token in the text tower"},
        {"no_causal_mask", NULL, "a text tower without the causal mask"},
        {"pool_type", "argmax", "text pooling other than argmax"},
        {"proj_bias", NULL, "a text projection bias"},
        {"proj_type", "linear", "a text projection other than linear"},
    };
    vit_status st;
    if ((st = refuse_all(tc, path, "text_cfg", fields,
                         sizeof fields / sizeof *fields, err)) ||
        (st = refuse_blocks(tc, path, "text_cfg", err)))
        return st;
    /* The tokenizer: CLIP's BPE, cleaned as "lower", truncated. */
    json_t *kw = json_object_get(tc, "tokenizer_kwargs");
    if (json_is_object(kw) &&
        ((st = refuse_set(kw, path, "text_cfg.tokenizer_kwargs", "clean",
                          "lower", "text cleaning other than \"lower\"",
                          err)) ||
         (st = refuse_set(kw, path, "text_cfg.tokenizer_kwargs",
                          "reduction_mask", "", "a token reduction", err))))
        return st;
    int width, heads, layers, ctx, vocab, mlp;
    char where[4352];
    snprintf(where, sizeof where, "%s: text_cfg", path);
    if ((st = oc_int(tc, path, ": text_cfg", "width", 512, 1, CFG_MAX_DIM,
                     &width, err)) ||
        (st = oc_int(tc, path, ": text_cfg", "heads", 8, 1, CFG_MAX_DIM,
                     &heads, err)) ||
        (st = oc_int(tc, path, ": text_cfg", "layers", 12, 0,
                     CFG_MAX_LAYERS, &layers, err)) ||
        (st = oc_int(tc, path, ": text_cfg", "context_length", 77, 2, 4096,
                     &ctx, err)) ||
        (st = oc_int(tc, path, ": text_cfg", "vocab_size", 49408, 1,
                     CFG_MAX_VOCAB, &vocab, err)) ||
        (st = mlp_width(tc, where, width, &mlp, err)))
        return st;
    json_object_set_new(out, "hidden_size", json_integer(width));
    json_object_set_new(out, "num_hidden_layers", json_integer(layers));
    json_object_set_new(out, "num_attention_heads", json_integer(heads));
    json_object_set_new(out, "intermediate_size", json_integer(mlp));
    json_object_set_new(out, "max_position_embeddings", json_integer(ctx));
    json_object_set_new(out, "vocab_size", json_integer(vocab));
    json_object_set_new(out, "hidden_act", json_string(act));
    json_object_set_new(out, "layer_norm_eps", json_real(1e-5));
    /* transformers' convention for "pool at the argmax of the ids". */
    json_object_set_new(out, "eos_token_id", json_integer(2));
    return VIT_OK;
}

/* DIR/open_clip_config.json, loaded; NULL with err set. */
static json_t *load(const char *dir, char *path, size_t n, vit_error *err)
{
    snprintf(path, n, "%s/" OC_CONFIG, dir);
    json_error_t je;
    json_t *o = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!o)
        vit__fail(err, VIT_E_CONFIG, "%s:%d: malformed JSON: %s", path,
                  je.line, je.text);
    else if (!json_is_object(o)) {
        vit__fail(err, VIT_E_CONFIG, "%s: not a JSON object", path);
        json_decref(o);
        o = NULL;
    }
    return o;
}

vit_status vit__openclip_config(const char *dir, json_t **out, vit_error *err)
{
    char path[4096];
    json_t *o = load(dir, path, sizeof path, err);
    if (!o)
        return VIT_E_CONFIG;
    vit_status st;
    /* The hub's files hold {"model_cfg", "preprocess_cfg"}; open_clip also
     * reads a bare model config. */
    json_t *mc = json_object_get(o, "model_cfg");
    if (!mc)
        mc = o;
    json_t *vc = json_object_get(mc, "vision_cfg");
    json_t *tc = json_object_get(mc, "text_cfg");
    json_t *cfg = json_object(), *vo = json_object(), *to = json_object();
    int quick = 0, embed;
    if (!json_is_object(mc) || !json_is_object(vc) || !json_is_object(tc)) {
        st = vit__fail(err, VIT_E_CONFIG,
                       "%s: model_cfg with vision_cfg and text_cfg objects "
                       "is missing",
                       path);
        goto out;
    }
    if ((st = refuse_set(mc, path, "", "multimodal_cfg", NULL,
                         "a multimodal decoder (CoCa)", err)) ||
        (st = refuse_set(mc, path, "", "init_logit_bias", NULL,
                         "a SigLIP-style logit_bias", err)) ||
        (st = vit__cfg_bool(mc, path, "quick_gelu", 0, &quick, err)) ||
        (st = vit__cfg_int(mc, path, "embed_dim", 512, 1, CFG_MAX_DIM, &embed,
                           err)))
        goto out;
    const char *act = quick ? "quick_gelu" : "gelu";
    if ((st = vision_config(vc, path, act, vo, err)) ||
        (st = text_config(tc, path, act, to, err)))
        goto out;
    json_object_set_new(cfg, "model_type", json_string("clip"));
    json_object_set_new(cfg, "architectures", json_pack("[s]", "CLIPModel"));
    json_object_set_new(cfg, "projection_dim", json_integer(embed));
    json_object_set(cfg, "vision_config", vo);
    json_object_set(cfg, "text_config", to);
    *out = cfg;
    cfg = NULL;
out:
    json_decref(cfg);
    json_decref(vo);
    json_decref(to);
    json_decref(o);
    return st;
}

txt_openclip vit__openclip_tokenizer(const char *dir)
{
    if (!vit__openclip_dir(dir))
        return TXT_OPENCLIP_NONE;
    char path[4096];
    json_t *o = load(dir, path, sizeof path, NULL);
    json_t *mc = json_object_get(o, "model_cfg");
    json_t *tc = json_object_get(mc ? mc : o, "text_cfg");
    const char *hf = json_string_value(json_object_get(tc, "hf_tokenizer_name"));
    txt_openclip mode = hf && *hf ? TXT_OPENCLIP_HF : TXT_OPENCLIP_SIMPLE;
    json_decref(o);
    return mode;
}

/* ---- preprocessing ---- */

static vit_status three(json_t *pc, const char *path, const char *key,
                        const float *def, float *out, vit_error *err)
{
    json_t *v = json_object_get(pc, key);
    if (!v || json_is_null(v)) {
        memcpy(out, def, 3 * sizeof *out);
        return VIT_OK;
    }
    for (int c = 0; c < 3; c++) {
        size_t n = json_is_array(v) ? json_array_size(v) : 1;
        json_t *e = json_is_array(v) ? json_array_get(v, n == 1 ? 0 : c) : v;
        if (!json_is_number(e) || (n != 1 && n != 3))
            return vit__fail(err, VIT_E_CONFIG,
                             "%s: preprocess_cfg.%s must be a number or "
                             "three",
                             path, key);
        out[c] = (float)json_number_value(e);
    }
    return VIT_OK;
}

vit_status vit__openclip_processor(const char *dir, int h, int w,
                                   int torchvision, vit__processor *pr,
                                   vit_error *err)
{
    char path[4096];
    json_t *o = load(dir, path, sizeof path, err);
    if (!o)
        return VIT_E_CONFIG;
    if (torchvision) {
        json_decref(o);
        return vit__fail(err, VIT_E_UNSUPPORTED,
                         "%s: open_clip preprocesses PIL images, with "
                         "Pillow's resize; --preprocess torchvision does "
                         "not apply to it",
                         dir);
    }
    /* open_clip's PreprocessCfg defaults under the file's preprocess_cfg;
     * the size is the vision tower's. */
    json_t *pc = json_object_get(o, "preprocess_cfg");
    static const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
    static const float stdv[3] = {0.26862954f, 0.26130258f, 0.27577711f};
    memset(pr, 0, sizeof *pr);
    img_preprocess_cfg *c = &pr->cfg;
    vit_status st = VIT_OK;
    const char *interp = json_string_value(json_object_get(pc, "interpolation"));
    const char *mode = json_string_value(json_object_get(pc, "resize_mode"));
    json_t *fill = json_object_get(pc, "fill_color");
    if ((st = three(pc, path, "mean", mean, c->mean, err)) ||
        (st = three(pc, path, "std", stdv, c->std, err)))
        goto out;
    if (!interp || strcmp(interp, "bicubic") == 0 ||
        strcmp(interp, "random") == 0) /* random: bicubic when evaluating */
        c->resample = IMG_BICUBIC;
    else if (strcmp(interp, "bilinear") == 0)
        c->resample = IMG_BILINEAR;
    else {
        st = vit__fail(err, VIT_E_CONFIG,
                       "%s: preprocess_cfg.interpolation \"%s\" is not "
                       "bicubic, bilinear or random",
                       path, interp);
        goto out;
    }
    if (fill && !json_is_null(fill) &&
        !(json_is_integer(fill) && json_integer_value(fill) == 0)) {
        st = vit__fail(err, VIT_E_UNSUPPORTED,
                       "%s: preprocess_cfg.fill_color other than 0 is not "
                       "supported",
                       path);
        goto out;
    }
    c->do_resize = c->do_rescale = c->do_normalize = 1;
    c->rescale_factor = 1.0f / 255.0f;
    c->tv_transforms = 1;
    c->size_h = h;
    c->size_w = w;
    if (!mode || strcmp(mode, "shortest") == 0) {
        /* A square: torchvision's Resize(size), the short side; else
         * ResizeKeepRatio(size), which open_clip builds without its
         * interpolation, so bicubic. Then CenterCrop. */
        c->do_center_crop = 1;
        c->crop_h = h;
        c->crop_w = w;
        if (h == w)
            c->shortest_edge = h;
        else {
            c->keep_h = h;
            c->keep_w = w;
            c->resample = IMG_BICUBIC;
        }
    } else if (strcmp(mode, "longest") == 0) {
        /* ResizeKeepRatio(longest=1), then CenterCropOrPad. */
        c->keep_h = h;
        c->keep_w = w;
        c->keep_longest = 1;
        c->do_center_crop = 1;
        c->crop_h = h;
        c->crop_w = w;
    } else if (strcmp(mode, "squash") != 0) {
        st = vit__fail(err, VIT_E_CONFIG,
                       "%s: preprocess_cfg.resize_mode \"%s\" is not "
                       "shortest, longest or squash",
                       path, mode);
    }
out:
    json_decref(o);
    return st;
}

/* ---- the weights ---- */

/* Adds `to`, a view of rows [r0, r0 + rows) of tensor `from` (all of it
 * for rows 0). */
static vit_status view(vit__weights *w, const char *to, const char *from,
                       int64_t r0, int64_t rows, vit_error *err)
{
    const vit__tensor *t = vit__weights_find(w, from);
    if (!t)
        return vit__fail(err, VIT_E_CHECKPOINT,
                         "checkpoint has no tensor '%s'", from);
    int64_t shape[VIT_MAX_DIMS];
    memcpy(shape, t->shape, sizeof shape);
    const uint8_t *data = t->data;
    if (rows) {
        size_t per = t->shape[0] ? t->nbytes / (size_t)t->shape[0] : 0;
        data += (size_t)r0 * per;
        shape[0] = rows;
    }
    return vit__weights_add(w, to, t->dtype, t->ndim, shape, data, err);
}

/* Adds `to`, (E, D), the transpose of open_clip's projection `from`
 * (D, E), in float32 the weights own. */
static vit_status transposed(vit__weights *w, const char *to,
                             const char *from, vit_error *err)
{
    const vit__tensor *t = vit__weights_find(w, from);
    if (!t || t->ndim != 2)
        return vit__fail(err, VIT_E_CHECKPOINT,
                         t ? "tensor '%s' is not a matrix"
                           : "checkpoint has no tensor '%s'",
                         from);
    int64_t D = t->shape[0], E = t->shape[1];
    const float *p = vit__weights_get(w, from, 2, t->shape, err);
    float *q = p ? vit__weights_alloc(w, (size_t)(D * E), err) : NULL;
    if (!q)
        return p ? VIT_E_NOMEM : VIT_E_CHECKPOINT;
    for (int64_t d = 0; d < D; d++)
        for (int64_t e = 0; e < E; e++)
            q[e * D + d] = p[d * E + e];
    vit__weights_release(w, p);
    int64_t shape[2] = {E, D};
    return vit__weights_add(w, to, VIT_DT_F32, 2, shape, q, err);
}

/* Names the resblocks under `from` ("visual.transformer.resblocks.") as
 * CLIP's encoder layers under `to` ("vision_model.encoder.layers."). */
static vit_status blocks(vit__weights *w, const char *to, const char *from,
                         vit_error *err)
{
    static const char *const same[][2] = {
        {"ln_1.weight", "layer_norm1.weight"},
        {"ln_1.bias", "layer_norm1.bias"},
        {"attn.out_proj.weight", "self_attn.out_proj.weight"},
        {"attn.out_proj.bias", "self_attn.out_proj.bias"},
        {"ln_2.weight", "layer_norm2.weight"},
        {"ln_2.bias", "layer_norm2.bias"},
        {"mlp.c_fc.weight", "mlp.fc1.weight"},
        {"mlp.c_fc.bias", "mlp.fc1.bias"},
        {"mlp.c_proj.weight", "mlp.fc2.weight"},
        {"mlp.c_proj.bias", "mlp.fc2.bias"},
    };
    static const char *const qkv[3] = {"q_proj", "k_proj", "v_proj"};
    vit_status st = VIT_OK;
    for (int l = 0; st == VIT_OK; l++) {
        char a[256], b[256];
        snprintf(a, sizeof a, "%s%d.attn.in_proj_weight", from, l);
        const vit__tensor *in = vit__weights_find(w, a);
        if (!in)
            break; /* past the last block: binding checks the count */
        if (in->ndim < 1 || in->shape[0] % 3)
            return vit__fail(err, VIT_E_CHECKPOINT,
                             "tensor '%s' has no three equal parts", a);
        int64_t D = in->shape[0] / 3;
        for (size_t i = 0; i < sizeof same / sizeof *same && !st; i++) {
            snprintf(a, sizeof a, "%s%d.%s", from, l, same[i][0]);
            snprintf(b, sizeof b, "%s%d.%s", to, l, same[i][1]);
            st = view(w, b, a, 0, 0, err);
        }
        for (int k = 0; k < 3 && !st; k++) {
            snprintf(a, sizeof a, "%s%d.attn.in_proj_weight", from, l);
            snprintf(b, sizeof b, "%s%d.self_attn.%s.weight", to, l, qkv[k]);
            if ((st = view(w, b, a, k * D, D, err)))
                break;
            snprintf(a, sizeof a, "%s%d.attn.in_proj_bias", from, l);
            snprintf(b, sizeof b, "%s%d.self_attn.%s.bias", to, l, qkv[k]);
            st = view(w, b, a, k * D, D, err);
        }
    }
    return st;
}

vit_status vit__openclip_weights(const char *dir, vit__weights **out,
                                 vit_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/" OC_WEIGHTS, dir);
    if (access(path, F_OK) != 0) {
        if (exists(dir, OC_BIN))
            return vit__fail(
                err, VIT_E_UNSUPPORTED,
                "%s holds only " OC_BIN "; vit reads safetensors. Download "
                "the model's " OC_WEIGHTS " (open_clip's hub repositories "
                "have one), or convert once in Python: `import open_clip, "
                "safetensors.torch; m = open_clip.create_model('local-dir:"
                "DIR'); safetensors.torch.save_file(m.state_dict(), 'DIR/"
                OC_WEIGHTS "')`",
                dir);
        return vit__fail(err, VIT_E_IO, "%s: no " OC_WEIGHTS, dir);
    }
    vit__weights *w;
    vit_status st = vit__weights_open_file(path, &w, err);
    if (st)
        return st;
    /* CustomTextCLIP (custom_text in model_cfg) keeps the text tower
     * under "text."; CLIP at the top level. */
    const char *tx = vit__weights_find(w, "text.token_embedding.weight")
                         ? "text."
                         : "";
    static const char *const vis[][2] = {
        {"conv1.weight", "embeddings.patch_embedding.weight"},
        {"class_embedding", "embeddings.class_embedding"},
        {"positional_embedding", "embeddings.position_embedding.weight"},
        {"ln_pre.weight", "pre_layrnorm.weight"},
        {"ln_pre.bias", "pre_layrnorm.bias"},
        {"ln_post.weight", "post_layernorm.weight"},
        {"ln_post.bias", "post_layernorm.bias"},
    };
    static const char *const txt[][2] = {
        {"token_embedding.weight", "embeddings.token_embedding.weight"},
        {"positional_embedding", "embeddings.position_embedding.weight"},
        {"ln_final.weight", "final_layer_norm.weight"},
        {"ln_final.bias", "final_layer_norm.bias"},
    };
    char a[256], b[256];
    for (size_t i = 0; i < sizeof vis / sizeof *vis && !st; i++) {
        snprintf(a, sizeof a, "visual.%s", vis[i][0]);
        snprintf(b, sizeof b, "vision_model.%s", vis[i][1]);
        st = view(w, b, a, 0, 0, err);
    }
    for (size_t i = 0; i < sizeof txt / sizeof *txt && !st; i++) {
        snprintf(a, sizeof a, "%s%s", tx, txt[i][0]);
        snprintf(b, sizeof b, "text_model.%s", txt[i][1]);
        st = view(w, b, a, 0, 0, err);
    }
    snprintf(a, sizeof a, "%stransformer.resblocks.", tx);
    snprintf(b, sizeof b, "%stext_projection", tx);
    if (st == VIT_OK &&
        !(st = blocks(w, "vision_model.encoder.layers.",
                      "visual.transformer.resblocks.", err)) &&
        !(st = blocks(w, "text_model.encoder.layers.", a, err)) &&
        !(st = transposed(w, "visual_projection.weight", "visual.proj",
                          err)))
        st = transposed(w, "text_projection.weight", b, err);
    if (st) {
        vit__weights_free(w);
        if (err) {
            char inner[sizeof err->msg];
            memcpy(inner, err->msg, sizeof inner);
            vit__fail(err, st, "%s: %s", path, inner);
        }
        return st;
    }
    *out = w;
    return VIT_OK;
}
