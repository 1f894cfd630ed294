/*
 * What the files of a model share: the loaded model (struct vit_model)
 * and the per-thread state (struct vit_state). model.c loads, frees and
 * describes a model; model_config.c reads its config.json; model_bind.c
 * binds its checkpoint tensors; model_run.c holds the state and the
 * forward passes behind classify, embed and match.
 */
#ifndef VIT_MODEL_IMPL_H
#define VIT_MODEL_IMPL_H

#include "vit/vit_impl.h"

/* The families of image models on the ViT core, which differ in their
 * tensor names, prefix tokens and heads. */
typedef enum {
    FAM_VIT,
    FAM_DEIT,
    FAM_DINOV2,
    FAM_DINOV2_REG,
    FAM_CLIP,
    FAM_SIGLIP,
    FAM_TIMM /* timm's VisionTransformer (timm.c) */
} vit_family;

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
    vit__map_head map;         /* SigLIP's vision head instead, or timm's
                                  attn_pool */
    vit__timm timm;            /* timm's pooling and head */
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
    vit__bctx *bctx; /* bf16, or int8 sums, through oneDNN; else NULL */
    vit__prof *prof; /* one per thread */
};

_Static_assert(VIT_PROF_N == VIT_PROFILE_OPS, "profile kinds");

/* model_config.c: config.json into m (architecture, family, geometry,
 * labels, heads' sizes). */
vit_status vit__read_config(vit_model *m, const char *dir, vit_error *err);
/* model_bind.c: the checkpoint's tensors (of the directory dir) bound to
 * m's towers and heads, by the naming of m's family. */
vit_status vit__bind_model(vit_model *m, const char *dir, vit_error *err);
/* model.c: the size of what vit_embed_pixels returns. */
int vit__model_embed_dim(const vit_model *m);

#endif
