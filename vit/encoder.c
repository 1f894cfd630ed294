/*
 * The pre-LN Transformer encoder shared by every model: binding a stack of
 * layers to checkpoint tensors under a model's naming scheme, and running
 * it in place over a batch of token sequences. ViT and both CLIP towers use
 * this code unchanged; they differ only in tensor names, activation, eps
 * and the causal mask.
 *
 * Dimension legend: B batch, T tokens, D hidden size, H heads, F MLP size,
 * M = B * T rows.
 */
#include "vit/vit_impl.h"

#include <cblas.h>
#include <string.h>

/* out (M, N) += in (M, K) @ w (N, K)^T + b: the residual connection folded
 * into the GEMM's accumulate. */
static void linear_acc(float *out, const float *in, const float *w,
                       const float *b, int M, int N, int K)
{
    if (b)
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++)
                out[(size_t)i * N + j] += b[j];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, in, K,
                w, K, 1.0f, out, N);
}

static const float *bind(vit__weights *w, const char *fmt, const char *prefix,
                         int layer, int d0, int d1, vit_error *err)
{
    char name[256];
    snprintf(name, sizeof name, fmt, prefix, layer);
    int64_t shape[2] = {d0, d1};
    return vit__weights_get(w, name, d1 ? 2 : 1, shape, err);
}

vit_status vit__encoder_bind(vit__encoder *e, vit__weights *w,
                             const vit__layer_names *nm, const char *prefix,
                             int qkv_bias, vit_error *err)
{
    int D = e->D, F = e->F;
    e->layers = calloc((size_t)e->L, sizeof *e->layers);
    if (!e->layers)
        return vit__fail(err, VIT_E_NOMEM, "out of memory");
    for (int l = 0; l < e->L; l++) {
        vit__layer *y = &e->layers[l];
        const float **need[] = {&y->ln1_w, &y->ln1_b, &y->wq, &y->wk, &y->wv,
                                &y->wo, &y->bo, &y->ln2_w, &y->ln2_b, &y->w1,
                                &y->b1, &y->w2, &y->b2, &y->bq, &y->bk,
                                &y->bv};
        const char *fmt[] = {nm->ln1_w, nm->ln1_b, nm->wq, nm->wk, nm->wv,
                             nm->wo, nm->bo, nm->ln2_w, nm->ln2_b, nm->w1,
                             nm->b1, nm->w2, nm->b2, nm->bq, nm->bk, nm->bv};
        const int dims[][2] = {{D, 0}, {D, 0}, {D, D}, {D, D}, {D, D},
                               {D, D}, {D, 0}, {D, 0}, {D, 0}, {F, D},
                               {F, 0}, {D, F}, {D, 0}, {D, 0}, {D, 0},
                               {D, 0}};
        int n = qkv_bias ? 16 : 13;
        for (int i = 0; i < n; i++) {
            *need[i] = bind(w, fmt[i], prefix, l, dims[i][0], dims[i][1], err);
            if (!*need[i])
                return VIT_E_CHECKPOINT;
        }
    }
    return VIT_OK;
}

void vit__encoder_free(vit__encoder *e)
{
    free(e->layers);
    e->layers = NULL;
}

void vit__encoder_forward(const vit__encoder *e, float *x, int B, int T,
                          int causal, const vit__scratch *s)
{
    /* x: (B, T, D), updated in place. */
    int D = e->D, F = e->F, M = B * T;
    for (int l = 0; l < e->L; l++) {
        const vit__layer *y = &e->layers[l];
        vit__layernorm(s->xn, x, y->ln1_w, y->ln1_b, M, D, e->eps);
        vit__linear(s->q, s->xn, y->wq, y->bq, M, D, D);
        vit__linear(s->k, s->xn, y->wk, y->bk, M, D, D);
        vit__linear(s->v, s->xn, y->wv, y->bv, M, D, D);
        vit__attention(s->ctx, s->q, s->k, s->v, s->scores, B, T, D, e->H,
                       causal);
        linear_acc(x, s->ctx, y->wo, y->bo, M, D, D);
        vit__layernorm(s->xn, x, y->ln2_w, y->ln2_b, M, D, e->eps);
        vit__linear(s->ff, s->xn, y->w1, y->b1, M, F, D);
        vit__activation(s->ff, (size_t)M * F, e->act);
        linear_acc(x, s->ff, y->w2, y->b2, M, D, F);
    }
}

size_t vit__scratch_floats(int B, int T, int D, int F)
{
    size_t M = (size_t)B * T;
    return 5 * M * D + M * F + (size_t)T * T;
}

void vit__scratch_carve(vit__scratch *s, float *mem, int B, int T, int D,
                        int F)
{
    size_t MD = (size_t)B * T * D;
    s->xn = mem;
    s->q = s->xn + MD;
    s->k = s->q + MD;
    s->v = s->k + MD;
    s->ctx = s->v + MD;
    s->ff = s->ctx + MD;
    s->scores = s->ff + (size_t)B * T * F;
}
