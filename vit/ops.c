/*
 * The kernels of the Transformer core, shaped op_forward(out, in, weights,
 * dims): the linear layer through OpenBLAS sgemm, layernorm, the activation
 * functions, row softmax, and multi-head self-attention with an optional
 * causal mask. They allocate nothing; scratch comes from the caller's
 * arena.
 *
 * Dimension legend:
 *   B batch, T tokens per sequence, C/D channels (hidden size),
 *   H heads, dh = D / H head size, M rows (B * T), N output features,
 *   K input features.
 */
#include "vit/vit_impl.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

void vit__linear(float *out, const float *in, const float *w, const float *b,
                 int M, int N, int K)
{
    /* out (M, N) = in (M, K) @ w (N, K)^T + b (N); w is PyTorch's
     * nn.Linear layout, used as stored. The heads run on vit's GEMM
     * without packing scratch (their rows are few: a batch's pooled
     * tokens), where every output is one chain of FMAs whatever M is, so
     * an image's logits and embeddings do not depend on its batch (with
     * OpenBLAS they did, from 48 rows on). */
    vit__sgemm_op op = {.w = {w}, .b = {b}, .out = {out}, .seg = N, .ld = N};
    vit__sgemm(&op, in, M, K, 0, N, NULL);
}

static VIT_BODY void layernorm_body(float *out, const float *in,
                                    const float *w, const float *b, int M,
                                    int C, float eps)
{
    /* Two passes, so the variance is not the difference of two large
     * numbers; the sums run in vector lanes. */
    for (int i = 0; i < M; i++) {
        const float *x = in + (size_t)i * C;
        float *y = out + (size_t)i * C;
        float sum = 0, var = 0;
#pragma omp simd reduction(+ : sum)
        for (int c = 0; c < C; c++)
            sum += x[c];
        float mean = sum / (float)C;
#pragma omp simd reduction(+ : var)
        for (int c = 0; c < C; c++)
            var += (x[c] - mean) * (x[c] - mean);
        float rstd = 1.0f / sqrtf(var / (float)C + eps);
        for (int c = 0; c < C; c++)
            y[c] = (x[c] - mean) * rstd * w[c] + b[c];
    }
}

/* Branch-free float exp and erf, written so the compiler vectorizes the
 * loops that call them (libm's expf and erff are scalar calls, and were a
 * fifth of a forward pass). exp: Cody-Waite reduction by ln 2 and Cephes'
 * degree-5 polynomial, within 2 ulp on [-87, 88] and 0 below; erf: a rational
 * approximation on [-4, 4] (erf is +-1 in float beyond), within about
 * 1e-7 absolute. */
static inline float vexp(float x)
{
    float in = x;
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    /* floor(v + 0.5), not roundf: the vectorizer has an instruction for
     * floor, while roundf is a libm call. */
    float n = __builtin_floorf(x * 1.44269504088896341f + 0.5f);
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t e = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &e, sizeof scale);
    /* Below -87 the result is under float's normal range: 0, which is
     * also what a masked (-inf) attention score must give. */
    return in < -87.0f ? 0.0f : p * scale;
}

static inline float verf(float x)
{
    x = x < -4.0f ? -4.0f : (x > 4.0f ? 4.0f : x);
    float x2 = x * x;
    float p = -2.72614225801306e-10f;
    p = p * x2 + 2.77068142495902e-08f;
    p = p * x2 + -2.10102402082508e-06f;
    p = p * x2 + -5.69250639462346e-05f;
    p = p * x2 + -7.34990630326855e-04f;
    p = p * x2 + -2.95459980854025e-03f;
    p = p * x2 + -1.60960333262415e-02f;
    p = p * x;
    float q = -1.45660718464996e-05f;
    q = q * x2 + -2.13374055278905e-04f;
    q = q * x2 + -1.68282697438203e-03f;
    q = q * x2 + -7.37332916720468e-03f;
    q = q * x2 + -1.42647390514189e-02f;
    return p / q;
}

static VIT_BODY void activation_body(float *x, size_t n, vit__act act)
{
    switch (act) {
    case VIT_ACT_GELU:
        for (size_t i = 0; i < n; i++)
            x[i] = 0.5f * x[i] * (1.0f + verf(x[i] * (float)M_SQRT1_2));
        break;
    case VIT_ACT_GELU_TANH:
        /* tanh(u) = 1 - 2 / (exp(2u) + 1) */
        for (size_t i = 0; i < n; i++) {
            float v = x[i];
            float u = 0.7978845608028654f * (v + 0.044715f * v * v * v);
            x[i] = 0.5f * v * (2.0f - 2.0f / (vexp(2.0f * u) + 1.0f));
        }
        break;
    case VIT_ACT_QUICK_GELU:
        for (size_t i = 0; i < n; i++)
            x[i] = x[i] / (1.0f + vexp(-1.702f * x[i]));
        break;
    case VIT_ACT_SILU:
        for (size_t i = 0; i < n; i++)
            x[i] = x[i] / (1.0f + vexp(-x[i]));
        break;
    case VIT_ACT_RELU:
        for (size_t i = 0; i < n; i++)
            x[i] = x[i] > 0 ? x[i] : 0;
        break;
    case VIT_ACT_TANH:
        for (size_t i = 0; i < n; i++)
            x[i] = 1.0f - 2.0f / (vexp(2.0f * x[i]) + 1.0f);
        break;
    }
}

static VIT_BODY void softmax_body(float *x, int rows, int cols, float scale,
                                  vit__bf16 *out)
{
    for (int r = 0; r < rows; r++) {
        float *p = x + (size_t)r * cols;
        /* The maximum in 16 lanes, written out (clang cannot vectorize an
         * omp simd max reduction); any order gives the same maximum. */
        float m16[16];
        for (int j = 0; j < 16; j++)
            m16[j] = -INFINITY;
        int c16 = cols / 16 * 16;
        for (int c = 0; c < c16; c += 16)
            for (int j = 0; j < 16; j++)
                m16[j] = p[c + j] > m16[j] ? p[c + j] : m16[j];
        float mx = -INFINITY;
        for (int j = 0; j < 16; j++)
            mx = m16[j] > mx ? m16[j] : mx;
        for (int c = c16; c < cols; c++)
            mx = p[c] > mx ? p[c] : mx;
#pragma omp simd
        for (int c = 0; c < cols; c++)
            p[c] = vexp((p[c] - mx) * scale);
        /* Summed in vector lanes: the order differs from a serial sum by
         * float rounding only. */
        float sum = 0;
#pragma omp simd reduction(+ : sum)
        for (int c = 0; c < cols; c++)
            sum += p[c];
        float inv = 1.0f / sum;
        if (out) {
            vit__bf16 *o = out + (size_t)r * cols;
#pragma omp simd
            for (int c = 0; c < cols; c++)
                o[c] = vit__bf16_round1(p[c] * inv);
        } else {
            for (int c = 0; c < cols; c++)
                p[c] *= inv;
        }
    }
}

/* Each compiled for every path of the CPU table. */
VIT_PATHS(layernorm, (float *out, const float *in, const float *w,
                      const float *b, int M, int C, float eps),
          (out, in, w, b, M, C, eps))
VIT_PATHS(activation, (float *x, size_t n, vit__act act), (x, n, act))
VIT_PATHS(softmax,
          (float *x, int rows, int cols, float scale, vit__bf16 *out),
          (x, rows, cols, scale, out))

void vit__layernorm(float *out, const float *in, const float *w,
                    const float *b, int M, int C, float eps)
{
    VIT_PICK(layernorm, (out, in, w, b, M, C, eps));
}

void vit__activation(float *x, size_t n, vit__act act)
{
    VIT_PICK(activation, (x, n, act));
}

void vit__softmax(float *x, int rows, int cols)
{
    VIT_PICK(softmax, (x, rows, cols, 1.0f, NULL));
}

void vit__softmax_bf16(float *x, int rows, int cols, float scale,
                       vit__bf16 *out)
{
    VIT_PICK(softmax, (x, rows, cols, scale, out));
}

double vit__now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* 64-byte alignment of the pieces of an attention head's work. */
static size_t up16(size_t n)
{
    return (n + 15) & ~(size_t)15;
}

/* bfloat16 elements in floats, rounded up to whole cache lines. */
static size_t bf16_floats(size_t n) { return up16((n + 1) / 2); }

size_t vit__attention_floats(int T, int dh)
{
    size_t tt = up16((size_t)T * T), td = up16((size_t)T * dh);
    size_t a = vit__sgemm_pack_floats(T, dh), b = vit__sgemm_pack_floats(T, T);
    size_t f32 = 3 * td + (a > b ? a : b);
    size_t b16 = 3 * bf16_floats((size_t)T * dh) + bf16_floats((size_t)T * T) +
                 td;
    return tt + (f32 > b16 ? f32 : b16) + 16;
}

/* The scores' masks and softmax, in float32 whichever the products; with
 * out16, of the scores times scale, the probabilities rounded into it. */
static void mask_softmax(float *scores, int T, int causal, int nkeys,
                         float scale, vit__bf16 *out16)
{
    if (causal)
        for (int i = 0; i < T; i++)
            for (int j = i + 1; j < T; j++)
                scores[(size_t)i * T + j] = -INFINITY;
    /* The keys past nkeys are padding, which no query attends to. */
    for (int i = 0; i < T && nkeys < T; i++)
        for (int j = nkeys > 0 ? nkeys : 0; j < T; j++)
            scores[(size_t)i * T + j] = -INFINITY;
    if (out16)
        vit__softmax_bf16(scores, T, T, scale, out16);
    else
        vit__softmax(scores, T, T);
}

/* The head's two products in float32 on vit__sgemm: the rows of q (scaled,
 * as PyTorch's scaled_dot_product_attention scales q) by k read as an
 * (N, K) weight, then the softmaxed scores by v transposed. */
static void head_f32(float *out, const float *q, const float *k,
                     const float *v, float *work, int T, int ld, int dh,
                     int causal, int nkeys, double *t)
{
    size_t td = up16((size_t)T * dh);
    float *scores = work, *qh = scores + up16((size_t)T * T), *kh = qh + td,
          *vt = kh + td, *pack = vt + td;
    float scale = 1.0f / sqrtf((float)dh);
    for (int i = 0; i < T; i++)
        for (int d = 0; d < dh; d++) {
            qh[(size_t)i * dh + d] = q[(size_t)i * ld + d] * scale;
            kh[(size_t)i * dh + d] = k[(size_t)i * ld + d];
            vt[(size_t)d * T + i] = v[(size_t)i * ld + d];
        }
    vit__sgemm_op sc = {.w = {kh}, .out = {scores}, .seg = T, .ld = T};
    vit__sgemm(&sc, qh, T, dh, 0, T, pack);
    if (t)
        t[0] = vit__now();
    mask_softmax(scores, T, causal, nkeys, 1.0f, NULL);
    if (t)
        t[1] = vit__now();
    vit__sgemm_op wv = {.w = {vt}, .out = {out}, .seg = dh, .ld = ld};
    vit__sgemm(&wv, scores, T, T, 0, dh, pack);
}

/* The head's two products in bfloat16 with float32 sums on oneDNN, as
 * PyTorch's autocast runs attention on the bfloat16 q, k and v its linear
 * layers give: q, k and v rounded, the scores scaled by 1/sqrt(dh) and
 * softmaxed in float32 (the scale applied inside the softmax's exp), and
 * the probabilities rounded for their product with v. */
static void head_bf16(float *out, const float *q, const float *k,
                      const float *v, float *work, int T, int ld, int dh,
                      int causal, int nkeys, vit__bctx *bc, int w, double *t)
{
    size_t tdb = bf16_floats((size_t)T * dh);
    float *scores = work;
    vit__bf16 *qb = (vit__bf16 *)(scores + up16((size_t)T * T)),
              *kb = (vit__bf16 *)((float *)qb + tdb),
              *vb = (vit__bf16 *)((float *)kb + tdb),
              *pb = (vit__bf16 *)((float *)vb + tdb);
    float *ob = (float *)pb + bf16_floats((size_t)T * T);
    for (int i = 0; i < T; i++) {
        vit__bf16_round(qb + (size_t)i * dh, q + (size_t)i * ld, (size_t)dh);
        vit__bf16_round(kb + (size_t)i * dh, k + (size_t)i * ld, (size_t)dh);
        vit__bf16_round(vb + (size_t)i * dh, v + (size_t)i * ld, (size_t)dh);
    }
    /* k (T, dh) row-major is the product's (dh, T) weights transposed. */
    vit__bact_run(bc, w, qb, kb, T, dh, T, 1, scores);
    if (t)
        t[0] = vit__now();
    mask_softmax(scores, T, causal, nkeys, 1.0f / sqrtf((float)dh), pb);
    if (t)
        t[1] = vit__now();
    vit__bact_run(bc, w, pb, vb, T, T, dh, 0, ob);
    for (int i = 0; i < T; i++)
        memcpy(out + (size_t)i * ld, ob + (size_t)i * dh, dh * sizeof *out);
}

void vit__attention_head(float *out, const float *q, const float *k,
                         const float *v, float *work, int T, int ld, int dh,
                         int causal, int nkeys, vit__bctx *bc, int w,
                         vit__prof *prof)
{
    /* One head of one sequence: q, k, v, out are (T, dh) views with row
     * stride ld. vit__sgemm runs these shapes about twice as fast as
     * OpenBLAS on one thread (gemm_bench 197 64 197, 197 197 64), and its
     * sums do not depend on the CPU path; oneDNN's bfloat16 product about
     * twice as fast again where the CPU has AVX512-BF16. */
    double t0 = prof ? vit__now() : 0, t[2], *tp = prof ? t : NULL;
    if (bc)
        head_bf16(out, q, k, v, work, T, ld, dh, causal, nkeys, bc, w, tp);
    else
        head_f32(out, q, k, v, work, T, ld, dh, causal, nkeys, tp);
    if (prof) {
        prof->sec[VIT_PROF_ATTENTION] += (t[0] - t0) + (vit__now() - t[1]);
        prof->flop[VIT_PROF_ATTENTION] += 4.0 * T * T * dh;
        prof->calls[VIT_PROF_ATTENTION]++;
        prof->sec[VIT_PROF_SOFTMAX] += t[1] - t[0];
        prof->calls[VIT_PROF_SOFTMAX]++;
    }
}

void vit__attention(float *out, const float *q, const float *k,
                    const float *v, float *work, int B, int T, int D, int H,
                    int causal, vit__bctx *bc)
{
    /* q, k, v, out: (B, T, D) with head h in columns [h*dh, (h+1)*dh). */
    int dh = D / H;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            size_t o = (size_t)b * T * D + (size_t)h * dh;
            vit__attention_head(out + o, q + o, k + o, v + o, work, T, D, dh,
                                causal, T, bc, 0, NULL);
        }
}

int vit__act_parse(const char *name)
{
    static const struct {
        const char *name;
        vit__act act;
    } acts[] = {
        {"gelu", VIT_ACT_GELU},
        {"gelu_new", VIT_ACT_GELU_TANH},
        {"gelu_pytorch_tanh", VIT_ACT_GELU_TANH},
        {"gelu_fast", VIT_ACT_GELU_TANH},
        {"quick_gelu", VIT_ACT_QUICK_GELU},
        {"silu", VIT_ACT_SILU},
        {"swish", VIT_ACT_SILU},
        {"relu", VIT_ACT_RELU},
        {"tanh", VIT_ACT_TANH},
    };
    for (size_t i = 0; i < sizeof acts / sizeof *acts; i++)
        if (strcmp(name, acts[i].name) == 0)
            return (int)acts[i].act;
    return -1;
}

/* A product on a pool of threads, each computing the cell of rows and
 * columns the encoder gives it (vit__grid_cell): the GEMM timings' and
 * SigLIP's attention-pooling head's. */
typedef struct {
    vit__sgemm_op op;
    const float *a;
    int M, N, K;
    float *packs;
    size_t pack_floats;
} gemm_job;

static void gemm_cell(void *ctx, int w, int n)
{
    const gemm_job *j = ctx;
    int r0, r1, c0, c1;
    vit__grid_cell(j->M, j->N, w, n, &r0, &r1, &c0, &c1);
    if (r0 >= r1 || c0 >= c1)
        return;
    vit__sgemm_op op = j->op;
    op.out[0] += (size_t)r0 * (size_t)op.ld;
    vit__sgemm(&op, j->a + (size_t)r0 * (size_t)j->K, r1 - r0, j->K, c0, c1,
               j->packs ? j->packs + (size_t)w * j->pack_floats : NULL);
}

void vit__pool_linear(vit__pool *pool, float *out, const float *in,
                      const float *w, const float *b, int M, int N, int K)
{
    gemm_job j = {{.w = {w}, .b = {b}, .out = {out}, .seg = N, .ld = N},
                  in, M, N, K, NULL, 0};
    vit__pool_run(pool, gemm_cell, &j);
}

/* One product for the GEMM timings: OpenBLAS's sgemm (its own threads),
 * or vit's GEMM on the pool. */
static void gemm_once(vit__pool *pool, gemm_job *j, const float *b, float *c)
{
    if (!j->packs) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->M, j->N, j->K,
                    1.0f, j->a, j->K, b, j->K, 0.0f, c, j->N);
        return;
    }
    vit__pool_run(pool, gemm_cell, j);
}

static double gemm_gflops(int ours, int M, int N, int K, int threads)
{
    if (M < 1 || N < 1 || K < 1)
        return 0;
    int T = threads < 1 ? 1 : threads > 64 ? 64 : threads;
    float *a = malloc((size_t)M * K * sizeof *a),
          *b = malloc((size_t)N * K * sizeof *b),
          *c = malloc((size_t)M * N * sizeof *c),
          *packs = ours ? malloc(vit__sgemm_pack_floats(M, K) * (size_t)T *
                                 sizeof *packs)
                        : NULL;
    double best = 0;
    if (a && b && c && (packs || !ours)) {
        for (size_t i = 0; i < (size_t)M * K; i++)
            a[i] = (float)(i % 7) * 0.1f;
        for (size_t i = 0; i < (size_t)N * K; i++)
            b[i] = (float)(i % 5) * 0.1f;
        if (!ours)
            openblas_set_num_threads(T);
        /* NULL (no threads to be had): the caller alone. */
        vit__pool *pool = ours ? vit__pool_new(T) : NULL;
        gemm_job j = {{.w = {b}, .out = {c}, .seg = N, .ld = N},
                      a, M, N, K, packs,
                      vit__sgemm_pack_floats(M, K)};
        /* Best of at least 5 runs and half a second, after a warm-up: on a
         * shared machine the best run is the one least disturbed. */
        double start = vit__now();
        for (int r = 0; r < 6 || vit__now() - start < 0.5; r++) {
            double t = vit__now();
            gemm_once(pool, &j, b, c);
            t = vit__now() - t;
            double g = 2.0 * M * N * K / t / 1e9;
            if (r > 0 && g > best) /* the first run warms caches, threads */
                best = g;
        }
        if (!ours)
            openblas_set_num_threads(1);
        vit__pool_free(pool);
    }
    free(a);
    free(b);
    free(c);
    free(packs);
    return best;
}

double vit_sgemm_gflops(int M, int N, int K, int threads)
{
    return gemm_gflops(0, M, N, K, threads);
}

double vit_gemm_gflops(int M, int N, int K, int threads)
{
    return gemm_gflops(1, M, N, K, threads);
}
