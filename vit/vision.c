/*
 * The vision tower shared by ViT and CLIP: patch embedding (the stride-P
 * convolution as one GEMM per image), class token and position embeddings,
 * an optional layernorm before the encoder (CLIP's pre_layrnorm), the
 * encoder, and the final layernorm over every token (ViT) or the class
 * token only (CLIP's post_layernorm). Reading its config and binding its
 * tensors is left to the model family; this file only computes.
 *
 * Dimension legend: B batch, C channels, (Hi, Wi) image size, P patch size,
 * NP = (Hi/P)(Wi/P) patches, T = NP + 1 tokens (class token first),
 * D hidden size.
 */
#include "vit/vit_impl.h"

#include <string.h>

vit_status vit__vision_geometry(vit__vision *v, const char *path,
                                vit_error *err)
{
    if (v->Hi % v->P || v->Wi % v->P)
        return vit__fail(err, VIT_E_CONFIG,
                         "%s: image_size %dx%d does not divide by patch_size "
                         "%d",
                         path, v->Hi, v->Wi, v->P);
    v->gh = v->Hi / v->P;
    v->gw = v->Wi / v->P;
    v->NP = v->gh * v->gw;
    v->T = v->NP + 1;
    v->D = v->enc.D;
    if ((int64_t)v->T * v->T > (1 << 28))
        return vit__fail(err, VIT_E_CONFIG, "%s: %d tokens is too many", path,
                         v->T);
    return VIT_OK;
}

size_t vit__vision_floats(const vit__vision *v, int B)
{
    /* The im2col buffer; the residual stream lives in the state. */
    return (size_t)B * v->NP * v->C * v->P * v->P;
}

typedef struct {
    const vit__vision *v;
    const float *pixels;
    float *x, *patches;
    int B;
    const vit__scratch *s;
} vision_job;

/* Token rows of the batch split among the threads, so that the patches of
 * one image are shared too: im2col, the patch GEMM, class token and
 * position embeddings, and CLIP's pre-encoder layernorm. */
static void phase_embed(void *arg, int w, int n)
{
    const vision_job *j = arg;
    const vit__vision *v = j->v;
    int C = v->C, P = v->P, Hi = v->Hi, Wi = v->Wi, D = v->D, T = v->T;
    size_t cpp = (size_t)C * P * P;
    int r0, r1;
    vit__split(j->B * T, w, n, &r0, &r1);
    double t0 = j->s->prof ? vit__now() : 0, flop = 0;
    for (int b = r0 / T; b < j->B && b * T < r1; b++) {
        /* Token rows [a, e) of image b; token t > 0 is patch t - 1. */
        int a = r0 > b * T ? r0 - b * T : 0;
        int e = r1 < (b + 1) * T ? r1 - b * T : T;
        int p0 = (a > 0 ? a : 1) - 1, p1 = e - 1;
        /* pixels (C, Hi, Wi) -> patches (NP, C * P * P), the im2col of the
         * stride-P convolution, in the weight's (c, ky, kx) order. */
        float *pb = j->patches + (size_t)b * v->NP * cpp;
        const float *img = j->pixels + (size_t)b * C * Hi * Wi;
        for (int p = p0; p < p1; p++) {
            int py = p / v->gw, px = p % v->gw;
            float *row = pb + (size_t)p * cpp;
            for (int c = 0; c < C; c++)
                for (int ky = 0; ky < P; ky++)
                    memcpy(row + ((size_t)c * P + ky) * P,
                           img + ((size_t)c * Hi + (size_t)py * P + ky) * Wi +
                               (size_t)px * P,
                           (size_t)P * sizeof(float));
        }
        /* The patch tokens go to rows 1..NP of the sequence. */
        float *xb = j->x + (size_t)b * T * D;
        if (a == 0)
            memcpy(xb, v->cls, (size_t)D * sizeof *xb);
        if (p1 > p0)
            vit__linear(xb + (size_t)(1 + p0) * D, pb + (size_t)p0 * cpp,
                        v->patch_w, v->patch_b, p1 - p0, D, (int)cpp);
        for (size_t i = (size_t)a * D; i < (size_t)e * D; i++)
            xb[i] += v->pos[i];
        if (v->pre_w)
            vit__layernorm(xb + (size_t)a * D, xb + (size_t)a * D, v->pre_w,
                           v->pre_b, e - a, D, v->enc.eps);
        flop += 2.0 * (p1 - p0) * (double)cpp * D;
    }
    if (j->s->prof) {
        vit__prof *p = &j->s->prof[w];
        p->sec[VIT_PROF_PATCH] += vit__now() - t0;
        p->flop[VIT_PROF_PATCH] += flop;
        p->calls[VIT_PROF_PATCH]++;
    }
}

/* The final layernorm: every token (ViT) or the class tokens (CLIP). */
static void phase_final(void *c, int w, int n)
{
    const vision_job *j = c;
    const vit__vision *v = j->v;
    int D = v->D, T = v->T, r0, r1;
    if (v->post_all) {
        vit__split(j->B * T, w, n, &r0, &r1);
        float *x = j->x + (size_t)r0 * D;
        VIT_PROF(j->s, w, VIT_PROF_LAYERNORM, 0,
                 vit__layernorm(x, x, v->post_w, v->post_b, r1 - r0, D,
                                v->enc.eps));
        return;
    }
    vit__split(j->B, w, n, &r0, &r1);
    for (int b = r0; b < r1; b++) {
        float *cls = j->x + (size_t)b * T * D;
        vit__layernorm(cls, cls, v->post_w, v->post_b, 1, D, v->enc.eps);
    }
}

void vit__vision_forward(const vit__vision *v, const float *pixels, int B,
                         float *x, float *patches, const vit__scratch *s)
{
    /* pixels (B, C, Hi, Wi) -> x (B, T, D). */
    vision_job j = {v, pixels, x, patches, B, s};
    vit__pool_run(s->pool, phase_embed, &j);
    vit__encoder_forward(&v->enc, x, B, v->T, 0, s);
    vit__pool_run(s->pool, phase_final, &j);
}
