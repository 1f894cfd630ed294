/*
 * The vision tower shared by ViT and CLIP: patch embedding (the stride-P
 * convolution as one GEMM over the batch's tokens), class token and
 * position embeddings, an optional layernorm before the encoder (CLIP's
 * pre_layrnorm), the encoder, and the final layernorm over every token
 * (ViT) or the class token only (CLIP's post_layernorm). Reading its
 * config and binding its tensors is left to the model family; this file
 * only computes.
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

/* The im2col rows: one per token, the class token's zeros (its product is
 * replaced by the class embedding), so that the patch product runs over
 * the batch's token rows at once and writes the residual stream in place. */
static size_t im2col_floats(const vit__vision *v, int B)
{
    size_t n = (size_t)B * v->T * v->C * v->P * v->P;
    return (n + 15) / 16 * 16;
}

size_t vit__vision_floats(const vit__vision *v, int B, int threads)
{
    /* The residual stream lives in the state. */
    return im2col_floats(v, B) +
           (size_t)threads *
               vit__sgemm_pack_floats(B * v->T, v->C * v->P * v->P);
}

typedef struct {
    const vit__vision *v;
    const float *pixels;
    float *x, *patches;
    int B;
    const vit__scratch *s;
} vision_job;

static void prof_patch(const vision_job *j, int w, double t0, double flop)
{
    if (j->s->prof) {
        vit__prof *p = &j->s->prof[w];
        p->sec[VIT_PROF_PATCH] += vit__now() - t0;
        p->flop[VIT_PROF_PATCH] += flop;
        p->calls[VIT_PROF_PATCH]++;
    }
}

/* pixels (C, Hi, Wi) -> the im2col of the stride-P convolution, token rows
 * split among the threads: row t > 0 of image b is patch t - 1, in the
 * weight's (c, ky, kx) order. */
static void phase_im2col(void *arg, int w, int n)
{
    const vision_job *j = arg;
    const vit__vision *v = j->v;
    int C = v->C, P = v->P, Hi = v->Hi, Wi = v->Wi, T = v->T, r0, r1;
    size_t cpp = (size_t)C * P * P;
    vit__split(j->B * T, w, n, &r0, &r1);
    double t0 = j->s->prof ? vit__now() : 0;
    for (int r = r0; r < r1; r++) {
        int b = r / T, t = r % T;
        float *row = j->patches + (size_t)r * cpp;
        if (t == 0) {
            memset(row, 0, cpp * sizeof *row);
            continue;
        }
        int py = (t - 1) / v->gw, px = (t - 1) % v->gw;
        const float *img = j->pixels + (size_t)b * C * Hi * Wi;
        for (int c = 0; c < C; c++)
            for (int ky = 0; ky < P; ky++)
                memcpy(row + ((size_t)c * P + ky) * P,
                       img + ((size_t)c * Hi + (size_t)py * P + ky) * Wi +
                           (size_t)px * P,
                       (size_t)P * sizeof(float));
    }
    prof_patch(j, w, t0, 0);
}

/* x = patches @ patch_w^T + patch_b, on vit's GEMM: a cell of rows and
 * columns a thread (columns too for thin batches, as the encoder's
 * products). */
static void phase_patch(void *arg, int w, int n)
{
    const vision_job *j = arg;
    const vit__vision *v = j->v;
    int D = v->D, M = j->B * v->T, K = v->C * v->P * v->P, r0, r1, c0, c1;
    vit__grid_cell(M, D, w, n, &r0, &r1, &c0, &c1);
    if (r0 >= r1 || c0 >= c1)
        return;
    double t0 = j->s->prof ? vit__now() : 0;
    vit__sgemm_op op = {{v->patch_w}, {v->patch_b}, {j->x + (size_t)r0 * D},
                        D, D, 0, 0};
    vit__sgemm(&op, j->patches + (size_t)r0 * K, r1 - r0, K, c0, c1,
               j->patches + im2col_floats(v, j->B) +
                   (size_t)w * vit__sgemm_pack_floats(M, K));
    prof_patch(j, w, t0, 2.0 * (r1 - r0) * (c1 - c0) * K);
}

/* The class token, position embeddings and CLIP's pre-encoder layernorm,
 * token rows split among the threads. */
static void phase_tokens(void *arg, int w, int n)
{
    const vision_job *j = arg;
    const vit__vision *v = j->v;
    int D = v->D, T = v->T, r0, r1;
    vit__split(j->B * T, w, n, &r0, &r1);
    double t0 = j->s->prof ? vit__now() : 0;
    for (int r = r0; r < r1; r++) {
        float *x = j->x + (size_t)r * D;
        const float *pos = v->pos + (size_t)(r % T) * D;
        if (r % T == 0)
            memcpy(x, v->cls, (size_t)D * sizeof *x);
        for (int i = 0; i < D; i++)
            x[i] += pos[i];
    }
    if (v->pre_w && r1 > r0)
        vit__layernorm(j->x + (size_t)r0 * D, j->x + (size_t)r0 * D, v->pre_w,
                       v->pre_b, r1 - r0, D, v->enc.eps);
    prof_patch(j, w, t0, 0);
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
    vit__pool_run(s->pool, phase_im2col, &j);
    vit__pool_run(s->pool, phase_patch, &j);
    vit__pool_run(s->pool, phase_tokens, &j);
    vit__encoder_forward(&v->enc, x, B, v->T, 0, s);
    vit__pool_run(s->pool, phase_final, &j);
    vit__pool_rest(s->pool);
}
