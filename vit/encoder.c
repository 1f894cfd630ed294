/*
 * The pre-LN Transformer encoder shared by every model: binding a stack of
 * layers to checkpoint tensors under a model's naming scheme, and running
 * it in place over a batch of token sequences. ViT, DeiT, DINOv2 and both
 * CLIP towers use this code unchanged; they differ only in tensor names,
 * activation, eps, the causal mask and DINOv2's layer scale (folded into
 * the weights at load).
 *
 * Dimension legend: B batch, T tokens, D hidden size, H heads, F MLP size,
 * M = B * T rows.
 */
#include "vit/vit_impl.h"

#include <string.h>

static const float *bind(vit__weights *w, const char *fmt, const char *prefix,
                         int layer, int d0, int d1, vit_error *err)
{
    char name[256];
    snprintf(name, sizeof name, fmt, prefix, layer);
    int64_t shape[2] = {d0, d1};
    return vit__weights_get(w, name, d1 ? 2 : 1, shape, err);
}

/* Layer scale folded into the product it follows: lambda * (x W^T + b)
 * is x (diag(lambda) W)^T + lambda b, so the encoder runs it as a plain
 * product (in every precision: scaling a row is scaling an output
 * channel). The sums round differently from the reference's product
 * then scale, by float32's last bit. The scaled copies replace *wt and
 * *b, whose originals are given back. */
static vit_status fold_scale(vit__weights *w, const char *fmt,
                             const char *prefix, int layer, const float **wt,
                             const float **b, int N, int K, vit_error *err)
{
    const float *g = bind(w, fmt, prefix, layer, N, 0, err);
    if (!g)
        return VIT_E_CHECKPOINT;
    float *nw = vit__weights_alloc(w, (size_t)N * K, err);
    float *nb = nw ? vit__weights_alloc(w, (size_t)N, err) : NULL;
    if (!nb)
        return VIT_E_NOMEM;
    for (int n = 0; n < N; n++) {
        for (int k = 0; k < K; k++)
            nw[(size_t)n * K + k] = g[n] * (*wt)[(size_t)n * K + k];
        nb[n] = g[n] * (*b)[n];
    }
    vit__weights_release(w, *wt);
    vit__weights_release(w, *b);
    vit__weights_release(w, g);
    *wt = nw;
    *b = nb;
    return VIT_OK;
}

/* A fused (3D, D) query-key-value weight and its (3D) bias, when the
 * names have one: split into three owned (D, D) copies and biases, since
 * every precision's packing and release takes them one by one; the fused
 * originals are given back. */
static vit_status bind_fused(vit__encoder *e, vit__weights *w,
                             const vit__layer_names *nm, const char *prefix,
                             int layer, int qkv_bias, vit__layer *y,
                             vit_error *err)
{
    int D = e->D;
    const float *qkv = bind(w, nm->wqkv, prefix, layer, 3 * D, D, err);
    const float *b = !qkv || !qkv_bias
                         ? NULL
                         : bind(w, nm->bqkv, prefix, layer, 3 * D, 0, err);
    if (!qkv || (qkv_bias && !b))
        return VIT_E_CHECKPOINT;
    /* Three blocks, since each weight is given back on its own once
     * packed; the biases, kept for the run, one. */
    size_t dd = (size_t)D * D;
    const float **ws[3] = {&y->wq, &y->wk, &y->wv};
    for (int i = 0; i < 3; i++) {
        float *p = vit__weights_alloc(w, dd, err);
        if (!p)
            return VIT_E_NOMEM;
        memcpy(p, qkv + i * dd, dd * sizeof *p);
        *ws[i] = p;
    }
    if (b) {
        float *p = vit__weights_alloc(w, 3 * (size_t)D, err);
        if (!p)
            return VIT_E_NOMEM;
        memcpy(p, b, 3 * (size_t)D * sizeof *p);
        y->bq = p;
        y->bk = p + D;
        y->bv = p + 2 * D;
    }
    vit__weights_release(w, qkv);
    if (b)
        vit__weights_release(w, b);
    return VIT_OK;
}

/* fc1's outputs: F, or SwiGLU's gate and up, 2F. */
static int fc1_width(const vit__encoder *e)
{
    return e->swiglu ? 2 * e->F : e->F;
}

vit_status vit__encoder_bind(vit__encoder *e, vit__weights *w,
                             const vit__layer_names *nm, const char *prefix,
                             int qkv_bias, vit_error *err)
{
    int D = e->D, F = e->F, F1 = fc1_width(e);
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
                               {D, D}, {D, 0}, {D, 0}, {D, 0}, {F1, D},
                               {F1, 0}, {D, F}, {D, 0}, {D, 0}, {D, 0},
                               {D, 0}};
        int n = qkv_bias ? 16 : 13;
        for (int i = 0; i < n; i++) {
            if (nm->wqkv && (need[i] == &y->wq || need[i] == &y->wk ||
                             need[i] == &y->wv || i >= 13))
                continue; /* bound from the fused tensors below */
            *need[i] = bind(w, fmt[i], prefix, l, dims[i][0], dims[i][1], err);
            if (!*need[i])
                return VIT_E_CHECKPOINT;
        }
        vit_status st;
        if (nm->wqkv &&
            (st = bind_fused(e, w, nm, prefix, l, qkv_bias, y, err)))
            return st;
        if (nm->qn_w) {
            const float **qk[] = {&y->qn_w, &y->qn_b, &y->kn_w, &y->kn_b};
            const char *qf[] = {nm->qn_w, nm->qn_b, nm->kn_w, nm->kn_b};
            for (int i = 0; i < 4; i++)
                if (!(*qk[i] = bind(w, qf[i], prefix, l, D / e->H, 0, err)))
                    return VIT_E_CHECKPOINT;
        }
        if (nm->ls1) {
            if ((st = fold_scale(w, nm->ls1, prefix, l, &y->wo, &y->bo, D, D,
                                 err)) ||
                (st = fold_scale(w, nm->ls2, prefix, l, &y->w2, &y->b2, D, F,
                                 err)))
                return st;
        }
    }
    return VIT_OK;
}

vit_status vit__encoder_quantize(vit__encoder *e, vit__weights *w,
                                 vit_error *err)
{
    int D = e->D, F = e->F, F1 = fc1_width(e);
    int onednn = vit__int8_onednn();
    for (int l = 0; l < e->L; l++) {
        vit__layer *y = &e->layers[l];
        const float *qkv[] = {y->wq, y->wk, y->wv}, *bqkv[] = {y->bq, y->bk,
                                                               y->bv};
        vit_status st;
        if ((st = vit__qweight_pack(&y->qkv, qkv, bqkv, 3, D, D, err)) ||
            (st = vit__qweight_pack(&y->o, &y->wo, &y->bo, 1, D, D, err)) ||
            (st = vit__qweight_pack(&y->fc1, &y->w1, &y->b1, 1, F1, D, err)) ||
            (st = vit__qweight_pack(&y->fc2, &y->w2, &y->b2, 1, D, F, err)))
            return st;
        const float **done[] = {&y->wq, &y->wk, &y->wv, &y->wo, &y->w1,
                                &y->w2};
        for (size_t i = 0; i < sizeof done / sizeof *done; i++) {
            vit__weights_release(w, *done[i]);
            *done[i] = NULL;
        }
        /* With AMX-INT8, oneDNN computes the sums (the same integers). */
        if (onednn &&
            ((st = vit__qweight_onednn(&y->qkv, err)) ||
             (st = vit__qweight_onednn(&y->o, err)) ||
             (st = vit__qweight_onednn(&y->fc1, err)) ||
             (st = vit__qweight_onednn(&y->fc2, err))))
            return st;
    }
    e->int8 = 1;
    e->int8_onednn = onednn;
    return VIT_OK;
}

/* The float32 weights of a layer's four products, as vit__bmat_pack
 * takes them: (N, K) and bias. */
static void bf16_parts(vit__layer *y, const vit__encoder *e, const float ***w,
                       const float **b, int *N, int *K)
{
    int D = e->D, F = e->F;
    const float **ws[6] = {&y->wq, &y->wk, &y->wv, &y->wo, &y->w1, &y->w2};
    const float *bs[6] = {y->bq, y->bk, y->bv, y->bo, y->b1, y->b2};
    const int ns[6] = {D, D, D, D, fc1_width(e), D},
              ks[6] = {D, D, D, D, D, F};
    for (int i = 0; i < 6; i++) {
        w[i] = ws[i];
        b[i] = bs[i];
        N[i] = ns[i];
        K[i] = ks[i];
    }
}

vit_status vit__encoder_bf16(vit__encoder *e, vit__weights *w,
                             vit_error *err)
{
    int onednn = vit__bf16_onednn();
    for (int l = 0; l < e->L; l++) {
        vit__layer *y = &e->layers[l];
        const float **wt[6], *bias[6];
        int N[6], K[6];
        bf16_parts(y, e, wt, bias, N, K);
        for (int i = 0; i < 6; i++) {
            size_t n = (size_t)N[i] * K[i];
            if (onednn) {
                vit_status st = vit__bmat_pack(&y->bm[i], *wt[i], bias[i],
                                               N[i], K[i], err);
                if (st)
                    return st;
            } else {
                /* Without bfloat16 hardware the rounded weights run in the
                 * float32 kernel, which widens them a block at a time: the
                 * same numbers class (bfloat16 weights, float32 sums),
                 * though not bfloat16 activations, at half the float32
                 * weights' memory. */
                if (!(y->w16[i] = malloc(n * sizeof *y->w16[i])))
                    return vit__fail(err, VIT_E_NOMEM, "out of memory");
                vit__bf16_round(y->w16[i], *wt[i], n);
            }
            vit__weights_release(w, *wt[i]);
            *wt[i] = NULL;
        }
    }
    e->bf16 = onednn;
    e->bf16_wide = !onednn;
    return VIT_OK;
}

size_t vit__encoder_bf16_bytes(const vit__encoder *e)
{
    size_t n = 0;
    for (int l = 0; (e->bf16 || e->bf16_wide) && l < e->L; l++) {
        const vit__layer *y = &e->layers[l];
        const size_t wide[6] = {(size_t)e->D * e->D, (size_t)e->D * e->D,
                                (size_t)e->D * e->D, (size_t)e->D * e->D,
                                (size_t)fc1_width(e) * e->D,
                                (size_t)e->D * e->F};
        for (int i = 0; i < 6; i++)
            n += e->bf16 ? vit__bmat_bytes(y->bm[i])
                         : wide[i] * sizeof *y->w16[i];
    }
    return n;
}

size_t vit__encoder_int8_bytes(const vit__encoder *e)
{
    size_t n = 0;
    for (int l = 0; e->int8 && l < e->L; l++) {
        const vit__qweight *q[] = {&e->layers[l].qkv, &e->layers[l].o,
                                   &e->layers[l].fc1, &e->layers[l].fc2};
        for (int i = 0; i < 4; i++)
            n += (q[i]->bm ? vit__bmat_bytes(q[i]->bm)
                           : (size_t)q[i]->Np * q[i]->Kp) +
                 (size_t)q[i]->Np * (sizeof *q[i]->scale +
                                     sizeof *q[i]->colsum +
                                     (q[i]->bias ? sizeof *q[i]->bias : 0));
    }
    return n;
}

void vit__encoder_free(vit__encoder *e)
{
    for (int l = 0; e->layers && l < e->L; l++) {
        vit__qweight_free(&e->layers[l].qkv);
        vit__qweight_free(&e->layers[l].o);
        vit__qweight_free(&e->layers[l].fc1);
        vit__qweight_free(&e->layers[l].fc2);
        for (int i = 0; i < 6; i++) {
            vit__bmat_free(e->layers[l].bm[i]);
            free(e->layers[l].w16[i]);
        }
    }
    free(e->layers);
    e->layers = NULL;
}

/* One layer's work for the pool: rows of the residual stream are split
 * among the threads for everything row-wise (layernorms, projections, the
 * MLP, residual adds); (sequence, head) pairs for attention. Three rounds a
 * layer, so a thread carries one block of rows through several ops while
 * it is still in cache. Thin batches in float32 split the products'
 * columns too (see row_groups). */
typedef struct {
    const vit__encoder *e;
    const vit__layer *y;
    float *x;
    int B, T, causal;
    const int *nkeys;
    const vit__scratch *s;
} layer_job;

/* ---- int8: quantized rows for the products, fused with their producers */

/* Rows [r0, r0 + m) of the stream: layernormed one at a time through a
 * row of `tmp` still in cache, then quantized into the scratch, so no
 * float32 copy of the normalized rows is written out. */
static void layernorm_quantize(const vit__scratch *s, int w, const float *x,
                               const float *g, const float *b, float eps,
                               int r0, int m, int D, float *tmp)
{
    uint8_t *a = s->qa + (size_t)r0 * s->qa_row;
    size_t lda = vit__qact_stride(D);
    VIT_PROF(s, w, VIT_PROF_LAYERNORM, 0,
             for (int i = 0; i < m; i++) {
                 vit__layernorm(tmp, x + (size_t)i * D, g, b, 1, D, eps);
                 vit__quantize_rows(a + i * lda, s->qs + r0 + i,
                                    s->qz + r0 + i, tmp, 1, D, NULL, NULL);
             });
}

/* Rows of an int8 product oneDNN sums at a time, into the thread's
 * attention block (free while the products run). */
#define QSUM_ROWS 64

/* Floats of room for the sums of the widest of e's int8 products. */
static size_t qsum_floats(const vit__encoder *e)
{
    if (!e->int8_onednn)
        return 0;
    const vit__layer *y = &e->layers[0];
    int n = y->qkv.Np > y->fc1.Np ? y->qkv.Np : y->fc1.Np;
    n = n > y->o.Np ? n : y->o.Np;
    n = n > y->fc2.Np ? n : y->fc2.Np;
    return (size_t)QSUM_ROWS * n;
}

/* The quantized rows [r0, r0 + m) times q on oneDNN, QSUM_ROWS at a time,
 * then scaled back into o (its rows from r0). */
static void qproduct_onednn(const vit__scratch *s, int w, const vit__qout *o,
                            int r0, int m, const vit__qweight *q)
{
    int32_t *sums = (int32_t *)(s->scores + (size_t)w * s->attn);
    /* The rows from r0 on lie vit__qact_stride(K) apart. */
    const uint8_t *a = s->qa + (size_t)r0 * s->qa_row;
    size_t lda = vit__qact_stride(q->K);
    for (int i = 0; i < m; i += QSUM_ROWS) {
        int mr = m - i < QSUM_ROWS ? m - i : QSUM_ROWS;
        vit__qout oi = *o;
        for (int g = 0; g < 3; g++)
            if (oi.out[g])
                oi.out[g] += (size_t)i * o->ld;
        if (oi.lo) {
            oi.lo += i;
            oi.hi += i;
        }
        vit__bmat_run_int8(s->bctx, w, q->bm, a + (size_t)i * lda, lda, mr,
                           sums);
        vit__qlinear_sums(&oi, sums, (size_t)q->Np, s->qs + r0 + i,
                          s->qz + r0 + i, q, mr);
    }
}

/* The product of the quantized rows [r0, r0 + m) and q, into o. */
static void qproduct(const vit__scratch *s, int w, const vit__qout *o,
                     int r0, int m, const vit__qweight *q)
{
    VIT_PROF(s, w, VIT_PROF_MATMUL, 2.0 * m * q->N * q->K,
             q->bm ? qproduct_onednn(s, w, o, r0, m, q)
                   : vit__qlinear(o, s->qa + (size_t)r0 * s->qa_row,
                                  s->qs + r0, s->qz + r0, q, m));
}

/* in (m rows from row r0) quantized, with their ranges when the product
 * that made them kept them, then times q into o. */
static void qlinear(const vit__scratch *s, int w, const vit__qout *o,
                    const float *in, int r0, int m, const vit__qweight *q,
                    const float *lo, const float *hi)
{
    VIT_PROF(s, w, VIT_PROF_QUANTIZE, 0,
             vit__quantize_rows(s->qa + (size_t)r0 * s->qa_row, s->qs + r0,
                                s->qz + r0, in, m, q->K, lo, hi));
    qproduct(s, w, o, r0, m, q);
}

static void qkv_int8(const layer_job *j, int w, int r0, int m)
{
    const vit__layer *y = j->y;
    const vit__scratch *s = j->s;
    int D = j->e->D;
    size_t o = (size_t)r0 * D;
    layernorm_quantize(s, w, j->x + o, y->ln1_w, y->ln1_b, j->e->eps, r0, m,
                       D, s->xn + o);
    vit__qout qo = {{s->q + o, s->k + o, s->v + o}, D, D, 0, 0, NULL, NULL};
    qproduct(s, w, &qo, r0, m, &y->qkv);
}

/* SwiGLU's gate on rows [r0, r0 + m): ff = silu(gate) * up, from fg's
 * rows of gate then up, as Dinov2SwiGLUFFN computes it. */
static void gate_rows(const vit__scratch *s, int F, int r0, int m)
{
    for (int r = r0; r < r0 + m; r++) {
        float *g = s->fg + (size_t)r * 2 * F, *f = s->ff + (size_t)r * F;
        vit__activation(g, (size_t)F, VIT_ACT_SILU);
        for (int i = 0; i < F; i++)
            f[i] = g[i] * g[F + i];
    }
}

static void swiglu_rows(const layer_job *j, int w, int r0, int m)
{
    VIT_PROF(j->s, w, VIT_PROF_ACTIVATION, 0,
             gate_rows(j->s, j->e->F, r0, m));
}

static void mlp_int8(const layer_job *j, int w, int r0, int m)
{
    const vit__layer *y = j->y;
    const vit__scratch *s = j->s;
    int D = j->e->D, F = j->e->F;
    size_t o = (size_t)r0 * D, of = (size_t)r0 * F;
    float *x = j->x + o, *lo = s->qlo + r0, *hi = s->qhi + r0;
    vit__qout to_x = {{x}, D, D, 1, 0, NULL, NULL};
    if (j->e->swiglu) {
        vit__qout to_fg = {{s->fg + (size_t)r0 * 2 * F}, 2 * F, 2 * F, 0, 0,
                           NULL, NULL};
        qlinear(s, w, &to_x, s->ctx + o, r0, m, &y->o, NULL, NULL);
        layernorm_quantize(s, w, x, y->ln2_w, y->ln2_b, j->e->eps, r0, m, D,
                           s->xn + o);
        qproduct(s, w, &to_fg, r0, m, &y->fc1);
        swiglu_rows(j, w, r0, m);
        qlinear(s, w, &to_x, s->ff + of, r0, m, &y->fc2, NULL, NULL);
        return;
    }
    /* The activation runs on each tile as it is stored, which also keeps
     * each row's range for quantizing it next. */
    vit__qout to_ff = {{s->ff + of}, F, F, 0, 1 + (int)j->e->act, lo, hi};
    qlinear(s, w, &to_x, s->ctx + o, r0, m, &y->o, NULL, NULL);
    layernorm_quantize(s, w, x, y->ln2_w, y->ln2_b, j->e->eps, r0, m, D,
                       s->xn + o);
    for (int i = 0; i < m; i++)
        lo[i] = hi[i] = 0;
    qproduct(s, w, &to_ff, r0, m, &y->fc1);
    qlinear(s, w, &to_x, s->ff + of, r0, m, &y->fc2, lo, hi);
}

/* ---- bf16: rows rounded for the products, run through oneDNN */

static void layernorm_rows(const layer_job *j, int w, const float *g,
                           const float *b, int r0, int r1);

/* The m rows of in (K features) from row r0 rounded into the thread's
 * block of the scratch, K apart. */
static const vit__bf16 *bround(const vit__scratch *s, int w, const float *in,
                               int r0, int m, int K)
{
    vit__bf16 *a = s->ba + (size_t)r0 * s->ba_row;
    VIT_PROF(s, w, VIT_PROF_QUANTIZE, 0,
             vit__bf16_round(a, in + (size_t)r0 * K, (size_t)m * K));
    return a;
}

static void bproduct(const vit__scratch *s, int w, const vit__bmat *b,
                     const vit__bf16 *a, int m, int N, int K, float *dst,
                     int accumulate)
{
    VIT_PROF(s, w, VIT_PROF_MATMUL, 2.0 * m * N * K,
             vit__bmat_run(s->bctx, w, b, a, m, dst, accumulate));
}

static void qkv_bf16(const layer_job *j, int w, int r0, int m)
{
    const vit__layer *y = j->y;
    const vit__scratch *s = j->s;
    int D = j->e->D;
    size_t o = (size_t)r0 * D;
    layernorm_rows(j, w, y->ln1_w, y->ln1_b, r0, r0 + m);
    const vit__bf16 *a = bround(s, w, s->xn, r0, m, D);
    bproduct(s, w, y->bm[VIT_BM_Q], a, m, D, D, s->q + o, 0);
    bproduct(s, w, y->bm[VIT_BM_K], a, m, D, D, s->k + o, 0);
    bproduct(s, w, y->bm[VIT_BM_V], a, m, D, D, s->v + o, 0);
}

/* x += ctx @ wo^T + bo; then x += act(ln2(x) @ w1^T + b1) @ w2^T + b2, the
 * residual connections folded into the products. */
static void mlp_bf16(const layer_job *j, int w, int r0, int m)
{
    const vit__layer *y = j->y;
    const vit__scratch *s = j->s;
    int D = j->e->D, F = j->e->F;
    size_t o = (size_t)r0 * D, of = (size_t)r0 * F;
    const vit__bf16 *a = bround(s, w, s->ctx, r0, m, D);
    bproduct(s, w, y->bm[VIT_BM_O], a, m, D, D, j->x + o, 1);
    layernorm_rows(j, w, y->ln2_w, y->ln2_b, r0, r0 + m);
    a = bround(s, w, s->xn, r0, m, D);
    if (j->e->swiglu) {
        bproduct(s, w, y->bm[VIT_BM_FC1], a, m, 2 * F, D,
                 s->fg + (size_t)r0 * 2 * F, 0);
        swiglu_rows(j, w, r0, m);
        a = bround(s, w, s->ff, r0, m, F);
    } else {
        /* The activation applied by oneDNN and its output rounded there,
         * into the rows' float32 block, free (twice the room needed). */
        vit__bf16 *h = (vit__bf16 *)(s->ff + of);
        VIT_PROF(s, w, VIT_PROF_MATMUL, 2.0 * m * F * D,
                 vit__bmat_run_act(s->bctx, w, y->bm[VIT_BM_FC1], a, m, h,
                                   j->e->act));
        a = h;
    }
    bproduct(s, w, y->bm[VIT_BM_FC2], a, m, D, F, j->x + o, 1);
}

/* ---- float32: the products through vit__sgemm on a block of rows and
 * columns; a thread's packing scratch lies past the attention scores. */

/* Per thread, for every product of M rows. */
static size_t pack_floats(int M, int D, int F)
{
    size_t a = vit__sgemm_pack_floats(M, D), b = vit__sgemm_pack_floats(M, F);
    return a > b ? a : b;
}

static float *pack_scratch(const layer_job *j, int w, int n)
{
    return j->s->scores + (size_t)n * j->s->attn +
           (size_t)w * pack_floats(j->B * j->T, j->e->D, j->e->F);
}

/* Rows [r0, r1) x columns [c0, c1) of op's product of in (K features). */
static void product(const layer_job *j, int w, int n, vit__sgemm_op op,
                    const float *in, int K, int r0, int r1, int c0, int c1)
{
    for (int i = 0; i < 3; i++)
        if (op.out[i])
            op.out[i] += (size_t)r0 * op.ld;
    VIT_PROF(j->s, w, VIT_PROF_MATMUL, 2.0 * (r1 - r0) * (c1 - c0) * K,
             vit__sgemm(&op, in + (size_t)r0 * K, r1 - r0, K, c0, c1,
                        pack_scratch(j, w, n)));
}

static void layernorm_rows(const layer_job *j, int w, const float *g,
                           const float *b, int r0, int r1)
{
    int D = j->e->D;
    size_t o = (size_t)r0 * D;
    VIT_PROF(j->s, w, VIT_PROF_LAYERNORM, 0,
             vit__layernorm(j->s->xn + o, j->x + o, g, b, r1 - r0, D,
                            j->e->eps));
}

static void qkv_f32(const layer_job *j, int w, int n, int r0, int r1, int c0,
                    int c1)
{
    const vit__layer *y = j->y;
    const vit__scratch *s = j->s;
    int D = j->e->D;
    vit__sgemm_op op = {
        {y->wq, y->wk, y->wv}, {y->bq, y->bk, y->bv}, {s->q, s->k, s->v},
        D, D, 0, 0,
        .w16 = {y->w16[VIT_BM_Q], y->w16[VIT_BM_K], y->w16[VIT_BM_V]}};
    product(j, w, n, op, s->xn, D, r0, r1, c0, c1);
}

/* x += ctx @ wo^T + bo: the residual connection folded into the product. */
static void attn_out_f32(const layer_job *j, int w, int n, int r0, int r1,
                         int c0, int c1)
{
    const vit__layer *y = j->y;
    int D = j->e->D;
    vit__sgemm_op op = {{y->wo}, {y->bo}, {j->x}, D, D, 1, 0,
                        .w16 = {y->w16[VIT_BM_O]}};
    product(j, w, n, op, j->s->ctx, D, r0, r1, c0, c1);
}

/* ff = act(xn @ w1^T + b1), the activation run on each tile as it is
 * stored; SwiGLU's fg = xn @ w1^T + b1, gated after. */
static void fc1_f32(const layer_job *j, int w, int n, int r0, int r1, int c0,
                    int c1)
{
    const vit__layer *y = j->y;
    int D = j->e->D, F = j->e->F;
    vit__sgemm_op op = {{y->w1}, {y->b1}, {j->s->ff}, F, F, 0,
                        1 + (int)j->e->act, .w16 = {y->w16[VIT_BM_FC1]}};
    if (j->e->swiglu) {
        op.out[0] = j->s->fg;
        op.seg = op.ld = 2 * F;
        op.act = 0;
    }
    product(j, w, n, op, j->s->xn, D, r0, r1, c0, c1);
}

/* x += ff @ w2^T + b2 */
static void fc2_f32(const layer_job *j, int w, int n, int r0, int r1, int c0,
                    int c1)
{
    const vit__layer *y = j->y;
    int D = j->e->D, F = j->e->F;
    vit__sgemm_op op = {{y->w2}, {y->b2}, {j->x}, D, D, 1, 0,
                        .w16 = {y->w16[VIT_BM_FC2]}};
    product(j, w, n, op, j->s->ff, F, r0, r1, c0, c1);
}

typedef void (*rows_fn)(const layer_job *j, int w, int r0, int m);

/* Thread w of n's rows of a phase, [r0, r1): run by the int8 or the bf16
 * path when the encoder has one (returns 1), else left to the caller's
 * float32 products (0; also when there are none). */
static int phase_rows(const layer_job *j, int w, int n, rows_fn int8,
                      rows_fn bf16, int *r0, int *r1)
{
    vit__split(j->B * j->T, w, n, r0, r1);
    if (*r0 == *r1)
        return 1;
    if (j->e->int8 || j->e->bf16) {
        (j->e->int8 ? int8 : bf16)(j, w, *r0, *r1 - *r0);
        return 1;
    }
    return 0;
}

static void phase_qkv(void *c, int w, int n)
{
    const layer_job *j = c;
    const vit__layer *y = j->y;
    int D = j->e->D, r0, r1;
    if (phase_rows(j, w, n, qkv_int8, qkv_bf16, &r0, &r1))
        return;
    layernorm_rows(j, w, y->ln1_w, y->ln1_b, r0, r1);
    qkv_f32(j, w, n, r0, r1, 0, 3 * D);
}

/* qk-norm: each token's query and key of one head (dh floats, D apart)
 * layernormed in place, as timm's Attention does before the product. */
static void qk_norm_rows(const layer_job *j, float *q, float *k)
{
    const vit__layer *y = j->y;
    int D = j->e->D, dh = D / j->e->H;
    for (int t = 0; t < j->T; t++) {
        float *qt = q + (size_t)t * D, *kt = k + (size_t)t * D;
        vit__layernorm(qt, qt, y->qn_w, y->qn_b, 1, dh, j->e->eps);
        vit__layernorm(kt, kt, y->kn_w, y->kn_b, 1, dh, j->e->eps);
    }
}

static void qk_norm(const layer_job *j, int w, float *q, float *k)
{
    VIT_PROF(j->s, w, VIT_PROF_LAYERNORM, 0, qk_norm_rows(j, q, k));
}

static void phase_attention(void *c, int w, int n)
{
    const layer_job *j = c;
    const vit__scratch *s = j->s;
    int D = j->e->D, H = j->e->H, dh = D / H, T = j->T, p0, p1;
    float *scores = s->scores + (size_t)w * s->attn;
    vit__split(j->B * H, w, n, &p0, &p1);
    for (int p = p0; p < p1; p++) {
        size_t o = (size_t)(p / H) * T * D + (size_t)(p % H) * dh;
        if (j->y->qn_w)
            qk_norm(j, w, s->q + o, s->k + o);
        vit__attention_head(s->ctx + o, s->q + o, s->k + o, s->v + o, scores,
                            T, D, dh, j->causal,
                            j->nkeys ? j->nkeys[p / H] : T,
                            j->e->bf16 ? s->bctx : NULL, w,
                            s->prof ? &s->prof[w] : NULL);
    }
}

static void phase_mlp(void *c, int w, int n)
{
    const layer_job *j = c;
    const vit__layer *y = j->y;
    int D = j->e->D, r0, r1;
    if (phase_rows(j, w, n, mlp_int8, mlp_bf16, &r0, &r1))
        return;
    attn_out_f32(j, w, n, r0, r1, 0, D);
    layernorm_rows(j, w, y->ln2_w, y->ln2_b, r0, r1);
    fc1_f32(j, w, n, r0, r1, 0, fc1_width(j->e));
    if (j->e->swiglu)
        swiglu_rows(j, w, r0, r1 - r0);
    fc2_f32(j, w, n, r0, r1, 0, D);
}

/* Thin batches split each product into a grid of row groups by column
 * groups, one cell a thread, so that each thread reads only its share of
 * the weights, with a round between every two products; the layernorms
 * still split rows. */

/* How many row groups n threads make of M rows: the most (a divisor of n)
 * that leaves each group at least two of the kernel's panels (the rows past
 * them are slower, and each thread of a group packs all of its rows). When
 * it is n, the layer splits rows only, each thread reading all of the
 * weights. */
static int row_groups(int M, int n)
{
    for (int g = n; g > 1; g--)
        if (n % g == 0 && M / g >= 2 * VIT_SNR)
            return g;
    return 1;
}

void vit__grid_cell(int M, int N, int w, int n, int *r0, int *r1, int *c0,
                    int *c1)
{
    int gr = row_groups(M, n), gc = n / gr;
    int t = (N + VIT_SMR - 1) / VIT_SMR;
    vit__split(M, w / gc, gr, r0, r1);
    vit__split(t, w % gc, gc, c0, c1);
    *c0 = *c0 * VIT_SMR < N ? *c0 * VIT_SMR : N;
    *c1 = *c1 * VIT_SMR < N ? *c1 * VIT_SMR : N;
}

#define GRID_PHASE(name, fn, N)                                            \
    static void name(void *c, int w, int n)                                \
    {                                                                      \
        const layer_job *j = c;                                            \
        int r0, r1, c0, c1;                                                \
        vit__grid_cell(j->B * j->T, N, w, n, &r0, &r1, &c0, &c1);          \
        if (r0 < r1 && c0 < c1)                                            \
            fn(j, w, n, r0, r1, c0, c1);                                   \
    }
GRID_PHASE(grid_qkv, qkv_f32, 3 * j->e->D)
GRID_PHASE(grid_attn_out, attn_out_f32, j->e->D)
GRID_PHASE(grid_fc1, fc1_f32, fc1_width(j->e))
GRID_PHASE(grid_fc2, fc2_f32, j->e->D)
#undef GRID_PHASE

#define ROW_PHASE(name, g, b)                                              \
    static void name(void *c, int w, int n)                                \
    {                                                                      \
        const layer_job *j = c;                                            \
        int r0, r1;                                                        \
        vit__split(j->B * j->T, w, n, &r0, &r1);                           \
        layernorm_rows(j, w, j->y->g, j->y->b, r0, r1);                    \
    }
ROW_PHASE(rows_ln1, ln1_w, ln1_b)
ROW_PHASE(rows_ln2, ln2_w, ln2_b)
#undef ROW_PHASE

static void rows_swiglu(void *c, int w, int n)
{
    const layer_job *j = c;
    int r0, r1;
    vit__split(j->B * j->T, w, n, &r0, &r1);
    swiglu_rows(j, w, r0, r1 - r0);
}

void vit__encoder_forward(const vit__encoder *e, float *x, int B, int T,
                          int causal, const int *nkeys, const vit__scratch *s)
{
    /* x: (B, T, D), updated in place. */
    layer_job j = {e, NULL, x, B, T, causal, nkeys, s};
    int n = vit__pool_size(s->pool);
    int grid = !e->int8 && !e->bf16 && row_groups(B * T, n) < n;
    for (int l = 0; l < e->L; l++) {
        j.y = &e->layers[l];
        if (grid) {
            vit__pool_run(s->pool, rows_ln1, &j);
            vit__pool_run(s->pool, grid_qkv, &j);
            vit__pool_run(s->pool, phase_attention, &j);
            vit__pool_run(s->pool, grid_attn_out, &j);
            vit__pool_run(s->pool, rows_ln2, &j);
            vit__pool_run(s->pool, grid_fc1, &j);
            if (e->swiglu)
                vit__pool_run(s->pool, rows_swiglu, &j);
            vit__pool_run(s->pool, grid_fc2, &j);
            continue;
        }
        vit__pool_run(s->pool, phase_qkv, &j);
        vit__pool_run(s->pool, phase_attention, &j);
        vit__pool_run(s->pool, phase_mlp, &j);
    }
}

/* Quantized rows and their scales and zero points, in floats. */
static size_t qscratch_floats(size_t M, int D, int F)
{
    size_t row = vit__qact_stride(F > D ? F : D);
    return (M * row + 3) / 4 + 4 * M + 16; /* + 16: 64-byte alignment */
}

/* Rounded rows, in floats. */
static size_t bscratch_floats(size_t M, int D, int F)
{
    return (M * (size_t)(F > D ? F : D) + 1) / 2 + 16; /* + 16: alignment */
}

/* Floats of each thread's attention block: the attention's, or the int8
 * sums from oneDNN, whichever is more. */
static size_t attn_floats(const vit__encoder *e, int T)
{
    size_t a = vit__attention_floats(T, e->D / e->H), q = qsum_floats(e);
    return a > q ? a : q;
}

size_t vit__scratch_floats(const vit__encoder *e, int B, int T, int threads)
{
    int D = e->D, F = e->F, mode = vit__encoder_mode(e);
    size_t M = (size_t)B * T;
    return 5 * M * D + M * F + (e->swiglu ? 2 * M * F : 0) +
           (size_t)threads * attn_floats(e, T) +
           (mode == VIT_MODE_INT8   ? qscratch_floats(M, D, F)
            : mode == VIT_MODE_BF16 ? bscratch_floats(M, D, F)
                                    : (size_t)threads * pack_floats((int)M, D, F));
}

void vit__scratch_carve(vit__scratch *s, float *mem, const vit__encoder *e,
                        int B, int T)
{
    int D = e->D, F = e->F, mode = vit__encoder_mode(e);
    int int8 = mode == VIT_MODE_INT8;
    size_t M = (size_t)B * T, MD = M * D;
    s->xn = mem;
    s->q = s->xn + MD;
    s->k = s->q + MD;
    s->v = s->k + MD;
    s->ctx = s->v + MD;
    s->ff = s->ctx + MD;
    float *end = s->ff + M * F;
    s->fg = NULL;
    if (e->swiglu) {
        s->fg = end;
        end += 2 * M * F;
    }
    s->qa = NULL;
    s->qs = NULL;
    s->qz = NULL;
    s->qlo = s->qhi = NULL;
    s->qa_row = vit__qact_stride(F > D ? F : D);
    if (int8) {
        s->qs = end;
        s->qz = (int32_t *)(s->qs + M);
        s->qlo = (float *)(s->qz + M);
        s->qhi = s->qlo + M;
        uintptr_t p = (uintptr_t)(s->qhi + M);
        s->qa = (uint8_t *)((p + 63) & ~(uintptr_t)63);
        end += qscratch_floats(M, D, F);
    }
    s->ba = NULL;
    s->ba_row = (size_t)(F > D ? F : D);
    if (mode == VIT_MODE_BF16) {
        uintptr_t p = (uintptr_t)end;
        s->ba = (vit__bf16 *)((p + 63) & ~(uintptr_t)63);
        end += bscratch_floats(M, D, F);
    }
    s->scores = end; /* last: each thread's attention work, then float32's
                        packing scratch */
    s->attn = attn_floats(e, T);
}
