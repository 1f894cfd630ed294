/*
 * The vision tower shared by ViT, DeiT, DINOv2 and CLIP: patch embedding
 * (the stride-P convolution as one GEMM over the batch's tokens), the
 * prefix tokens (class token, DeiT's distillation token, DINOv2's
 * registers), position embeddings (resized as DINOv2 resizes them), an
 * optional layernorm before the encoder (CLIP's pre_layrnorm), the
 * encoder, and the final layernorm over every token (ViT) or the class
 * token only (CLIP's post_layernorm). Reading its
 * config and binding its tensors is left to the model family; this file
 * only computes.
 *
 * Dimension legend: B batch, C channels, (Hi, Wi) image size, P patch size,
 * NP = (Hi/P)(Wi/P) patches, T = nprefix + NP tokens (class token first),
 * D hidden size.
 */
#include "vit/vit_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

vit_status vit__vision_geometry(vit__vision *v, const char *path,
                                vit_error *err)
{
    if (!v->floor_patches && (v->Hi % v->P || v->Wi % v->P))
        return vit__fail(err, VIT_E_CONFIG,
                         "%s: image_size %dx%d does not divide by patch_size "
                         "%d",
                         path, v->Hi, v->Wi, v->P);
    v->gh = v->Hi / v->P;
    v->gw = v->Wi / v->P;
    if (v->gh < 1 || v->gw < 1)
        return vit__fail(err, VIT_E_CONFIG,
                         "%s: images of %dx%d are smaller than one %dx%d "
                         "patch",
                         path, v->Hi, v->Wi, v->P, v->P);
    v->NP = v->gh * v->gw;
    v->T = v->NP + v->nprefix;
    v->D = v->enc.D;
    if ((int64_t)v->T * v->T > (1 << 28))
        return vit__fail(err, VIT_E_CONFIG, "%s: %d tokens is too many", path,
                         v->T);
    return VIT_OK;
}

/* ---- position embeddings at another grid (DINOv2) ---- */

/* PyTorch's cubic convolution kernel (upsample_bicubic2d's, a = -0.75),
 * for |x| < 2. */
static double cubic(double x, double a)
{
    x = x < 0 ? -x : x;
    if (x < 1)
        return ((a + 2) * x - (a + 3)) * x * x + 1;
    if (x < 2)
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
    return 0;
}

/* The weights of output i of an axis of n inputs resized to m, as a dense
 * row w[0..n). Plain bicubic: four taps around scale * (i + 0.5) - 0.5,
 * indices clamped to the edge (so a clamped tap adds to the edge's
 * weight). Antialiased: PyTorch's _upsample_bicubic2d_aa, whose support
 * widens by the scale when shrinking and whose weights are normalized to
 * sum to 1. */
static void axis_weights(double *w, int i, int n, int m, int antialias)
{
    double scale = (double)n / m;
    memset(w, 0, (size_t)n * sizeof *w);
    if (!antialias) {
        double real = scale * (i + 0.5) - 0.5;
        int x0 = (int)floor(real);
        double t = real - x0;
        for (int k = 0; k < 4; k++) {
            int x = x0 - 1 + k;
            w[x < 0 ? 0 : x > n - 1 ? n - 1 : x] +=
                cubic(t - (k - 1), -0.75);
        }
        return;
    }
    double support = scale >= 1 ? 2.0 * scale : 2.0;
    double inv = scale >= 1 ? 1.0 / scale : 1.0;
    double center = scale * (i + 0.5), total = 0;
    int lo = (int)(center - support + 0.5), hi = (int)(center + support + 0.5);
    lo = lo < 0 ? 0 : lo;
    hi = hi > n ? n : hi;
    for (int x = lo; x < hi; x++)
        total += w[x] = cubic((x - center + 0.5) * inv, -0.5);
    for (int x = lo; x < hi && total != 0; x++)
        w[x] /= total;
}

vit_status vit__pos_resize(float *dst, const float *src, int sh, int sw,
                           int dh, int dw, int D, int antialias,
                           vit_error *err)
{
    /* Separable, as PyTorch runs both: along the width first into rows of
     * the source's height, then along the height. The grids are small (a
     * few dozen a side), so the weights are dense matrices. */
    double *wx = malloc((size_t)dw * sw * sizeof *wx);
    double *wy = malloc((size_t)dh * sh * sizeof *wy);
    double *tmp = calloc((size_t)sh * dw * D, sizeof *tmp);
    if (!wx || !wy || !tmp) {
        free(wx);
        free(wy);
        free(tmp);
        return vit__fail(err, VIT_E_NOMEM,
                         "out of memory resizing position embeddings");
    }
    for (int x = 0; x < dw; x++)
        axis_weights(wx + (size_t)x * sw, x, sw, dw, antialias);
    for (int y = 0; y < dh; y++)
        axis_weights(wy + (size_t)y * sh, y, sh, dh, antialias);
    for (int y = 0; y < sh; y++)
        for (int x = 0; x < dw; x++)
            for (int j = 0; j < sw; j++) {
                double c = wx[(size_t)x * sw + j];
                if (c == 0)
                    continue;
                for (int d = 0; d < D; d++)
                    tmp[((size_t)y * dw + x) * D + d] +=
                        c * src[((size_t)y * sw + j) * D + d];
            }
    for (int y = 0; y < dh; y++)
        for (int x = 0; x < dw; x++)
            for (int d = 0; d < D; d++) {
                double acc = 0;
                for (int j = 0; j < sh; j++)
                    acc += wy[(size_t)y * sh + j] *
                           tmp[((size_t)j * dw + x) * D + d];
                dst[((size_t)y * dw + x) * D + d] = (float)acc;
            }
    free(wx);
    free(wy);
    free(tmp);
    return VIT_OK;
}

/* The im2col rows: one per token, the prefix tokens' zeros (their product
 * is replaced by their embeddings), so that the patch product runs over
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
 * split among the threads: row t >= nprefix of image b is patch
 * t - nprefix, in the weight's (c, ky, kx) order. */
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
        if (t < v->nprefix) {
            memset(row, 0, cpp * sizeof *row);
            continue;
        }
        int py = (t - v->nprefix) / v->gw, px = (t - v->nprefix) % v->gw;
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
    vit__sgemm_op op = {.w = {v->patch_w}, .b = {v->patch_b},
                        .out = {j->x + (size_t)r0 * D}, .seg = D, .ld = D};
    vit__sgemm(&op, j->patches + (size_t)r0 * K, r1 - r0, K, c0, c1,
               j->patches + im2col_floats(v, j->B) +
                   (size_t)w * vit__sgemm_pack_floats(M, K));
    prof_patch(j, w, t0, 2.0 * (r1 - r0) * (c1 - c0) * K);
}

/* The prefix tokens, position embeddings and CLIP's pre-encoder
 * layernorm, token rows split among the threads. */
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
        if (r % T < v->nprefix)
            memcpy(x, v->prefix + (size_t)(r % T) * D, (size_t)D * sizeof *x);
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
    if (!v->post_w)
        return; /* none (timm's with fc_norm: the pooled features') */
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
    vit__encoder_forward(&v->enc, x, B, v->T, 0, NULL, s);
    vit__pool_run(s->pool, phase_final, &j);
    vit__pool_rest(s->pool);
}

vit_status vit__pair_heads(vit__weights *w, const float *cw, const float *cb,
                           const float *dw, const float *db, int L, int D,
                           const float **head_w, const float **head_b,
                           vit_error *err)
{
    float *hw = vit__weights_alloc(w, (size_t)L * 2 * D, err);
    float *hb = hw ? vit__weights_alloc(w, (size_t)L, err) : NULL;
    if (!hb)
        return VIT_E_NOMEM;
    for (int l = 0; l < L; l++) {
        for (int k = 0; k < D; k++) {
            hw[(size_t)l * 2 * D + k] = 0.5f * cw[(size_t)l * D + k];
            hw[(size_t)l * 2 * D + D + k] = 0.5f * dw[(size_t)l * D + k];
        }
        hb[l] = 0.5f * (cb[l] + db[l]);
    }
    *head_w = hw;
    *head_b = hb;
    return VIT_OK;
}
