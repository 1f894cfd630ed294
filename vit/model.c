/*
 * The models and the library's public entry points for them: loading a
 * `google/vit-*`, `facebook/deit-*`, `facebook/dinov2-*`, `openai/clip-*`
 * or `google/siglip-*` style directory (its config.json is read by
 * model_config.c, its tensors bound by model_bind.c), its preprocessor
 * and tokenizer, freeing it and describing it. The state and the forward
 * passes are in model_run.c.
 */
#include "vit/model_impl.h"

#include <string.h>
#include <unistd.h>


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
    if ((st = vit__read_config(m, dir, err)) ||
        (m->has_vision && (st = load_preprocessor(m, dir, err))) ||
        (st = m->family == FAM_TIMM  ? vit__timm_weights_open(dir, &m->w, err)
              : vit__openclip_dir(dir) ? vit__openclip_weights(dir, &m->w, err)
                                       : vit__weights_open(dir, &m->w, err)))
        goto fail;
    st = vit__bind_model(m, dir, err);
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

int vit__model_embed_dim(const vit_model *m)
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
    info->embed_dim = vit__model_embed_dim(m);
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
