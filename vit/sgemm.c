/*
 * The float32 linear layer of the encoder, out [+]= in @ w^T + b, with w
 * in nn.Linear's (N, K) layout read where it lies (an F32 checkpoint's
 * memory map: it is never copied or packed).
 *
 * OpenBLAS packs the whole weight matrix on every call, which at the thin
 * products of one image (a few hundred rows, split between threads) costs
 * as much as the multiply. Here the product is computed transposed,
 * C^T = W X^T: the weights are the broadcast operand, eight rows n..n+7
 * read in place, one scalar per row per k, and it is the activations that
 * are packed, per call, into panels of 48 rows transposed (X^T[k][48]:
 * M x K floats a call, cheap next to the product). The micro-kernel holds
 * an 8 x 48 tile of C^T in 24 zmm accumulators of 16 rows each; the
 * epilogue transposes it in registers into out, with the bias and the
 * accumulate. The activations are packed a chunk of panels at a time (what
 * stays in L2 next to the weights), and the weights stream past each chunk
 * once, a block of 8 rows serving all of the chunk's panels: one image's
 * rows are one chunk, so a thin product reads its weights once.
 *
 * The rows past a chunk's last whole panel are computed as dot products
 * along k (16 lanes, then summed) while the block's weight rows are still
 * in cache, so no panel is padded. Each output column is computed the same
 * way whatever block of columns it is asked in: splitting a product by
 * columns gives the same bits.
 *
 * The AVX-512 kernel runs where the CPU has it; elsewhere the product goes
 * to cblas_sgemm.
 *
 * Dimension legend: M rows (tokens), N output features, K input features.
 */
#include "vit/vit_impl.h"

#include <cblas.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define VIT_HAVE_AVX512_SGEMM 1
#endif

/* Rows of activations packed per chunk: whole panels of VIT_SNR rows, as
 * many as fit this many floats (at least one). */
#define CHUNK_FLOATS (160 * 1024)
/* Longest run of k packed at once: longer K is taken in near-equal blocks,
 * so that a chunk holds several panels and the weights are read once per
 * chunk, not once per panel. */
#define KC_MAX 768

static int chunk_panels(int M, int kc)
{
    int n = CHUNK_FLOATS / VIT_SNR / kc;
    n = n > 0 ? n : 1;
    return M / VIT_SNR < n ? M / VIT_SNR : n;
}

/* The k block for K features: all of them with an activation, which needs
 * the whole sum at once. */
static int k_block(int K, int act)
{
    if (act || K <= KC_MAX)
        return K;
    int nb = (K + KC_MAX - 1) / KC_MAX;
    return ((K + nb - 1) / nb + 15) / 16 * 16;
}

/* One run of a product's columns inside one output segment. */
typedef struct {
    const float *w, *b; /* its first weight row and bias entry */
    float *out;         /* its first column, row 0 */
    int n;              /* columns */
} piece;

/* Columns [n0, n1) of the product as runs inside segments: at most 3. */
static int pieces(const vit__sgemm_op *o, int K, int n0, int n1, piece *p)
{
    int np = 0;
    for (int n = n0; n < n1;) {
        int s = n / o->seg, c = n - s * o->seg;
        int len = (s + 1) * o->seg < n1 ? (s + 1) * o->seg - n : n1 - n;
        p[np].w = o->w[s] + (size_t)c * K;
        p[np].b = o->b[s] ? o->b[s] + c : NULL;
        p[np].out = o->out[s] + c;
        p[np].n = len;
        np++;
        n += len;
    }
    return np;
}

static void sgemm_blas(const piece *p, int np, const float *in, int M, int K,
                       const vit__sgemm_op *o)
{
    int ld = o->ld, accumulate = o->accumulate;
    for (int i = 0; i < np; i++) {
        if (p[i].b)
            for (int r = 0; r < M; r++) {
                float *dst = p[i].out + (size_t)r * ld;
                if (accumulate)
                    for (int j = 0; j < p[i].n; j++)
                        dst[j] += p[i].b[j];
                else
                    memcpy(dst, p[i].b, (size_t)p[i].n * sizeof *dst);
            }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, p[i].n, K,
                    1.0f, in, K, p[i].w, K,
                    accumulate || p[i].b ? 1.0f : 0.0f, p[i].out, ld);
        for (int r = 0; o->act && r < M; r++)
            vit__activation(p[i].out + (size_t)r * ld, (size_t)p[i].n,
                            (vit__act)(o->act - 1));
    }
}

size_t vit__sgemm_pack_floats(int M, int K)
{
    /* The most of either k block; + 16: 64-byte alignment. */
    size_t a = (size_t)chunk_panels(M, K) * VIT_SNR * (size_t)K,
           b = (size_t)chunk_panels(M, k_block(K, 0)) * VIT_SNR *
               (size_t)k_block(K, 0);
    return (a > b ? a : b) + 16;
}

#ifdef VIT_HAVE_AVX512_SGEMM
#define AVX512 __attribute__((target("avx512f,avx512vl")))

/* The 16 x 16 transpose: r[i] lane j becomes r[j] lane i. */
AVX512 static inline __attribute__((always_inline)) void
transpose16(__m512 *r)
{
    __m512 t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    /* u[4a + q], 128-bit lane L: rows 4a..4a+3 at column 4L + q. */
    for (int a = 0; a < 16; a += 4) {
        u[a] = _mm512_shuffle_ps(t[a], t[a + 2], 0x44);
        u[a + 1] = _mm512_shuffle_ps(t[a], t[a + 2], 0xee);
        u[a + 2] = _mm512_shuffle_ps(t[a + 1], t[a + 3], 0x44);
        u[a + 3] = _mm512_shuffle_ps(t[a + 1], t[a + 3], 0xee);
    }
    for (int q = 0; q < 4; q++) {
        __m512 v0 = _mm512_shuffle_f32x4(u[q], u[4 + q], 0x88);
        __m512 v1 = _mm512_shuffle_f32x4(u[q], u[4 + q], 0xdd);
        __m512 w0 = _mm512_shuffle_f32x4(u[8 + q], u[12 + q], 0x88);
        __m512 w1 = _mm512_shuffle_f32x4(u[8 + q], u[12 + q], 0xdd);
        r[q] = _mm512_shuffle_f32x4(v0, w0, 0x88);
        r[8 + q] = _mm512_shuffle_f32x4(v0, w0, 0xdd);
        r[4 + q] = _mm512_shuffle_f32x4(v1, w1, 0x88);
        r[12 + q] = _mm512_shuffle_f32x4(v1, w1, 0xdd);
    }
}

/* 16 rows of in (row stride ld) -> the panel's 16 lanes from `lane`:
 * p[k * VIT_SNR + lane + i] = in[i][k] for k < K. */
AVX512 static void pack16(float *p, int lane, const float *in, size_t ld,
                          int K)
{
    for (int k = 0; k < K; k += 16) {
        int kn = K - k < 16 ? K - k : 16;
        __mmask16 km = (__mmask16)((1u << kn) - 1);
        __m512 r[16];
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++)
            r[i] = _mm512_maskz_loadu_ps(km, in + i * ld + k);
        transpose16(r);
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++)
            if (i < kn)
                _mm512_store_ps(p + (size_t)(k + i) * VIT_SNR + lane, r[i]);
    }
}

/* One k step of the kernel: the panel's three vectors at k, times each
 * row's weight at k broadcast. */
#define SSTEP(k)                                                            \
    {                                                                       \
        __m512 x0 = _mm512_load_ps(p + (size_t)(k) * VIT_SNR);              \
        __m512 x1 = _mm512_load_ps(p + (size_t)(k) * VIT_SNR + 16);         \
        __m512 x2 = _mm512_load_ps(p + (size_t)(k) * VIT_SNR + 32);         \
        _Pragma("GCC unroll 8") for (int r = 0; r < 8; r++)                 \
        {                                                                   \
            __m512 wk = _mm512_set1_ps(wr[r][k]);                           \
            c[r][0] = _mm512_fmadd_ps(wk, x0, c[r][0]);                     \
            c[r][1] = _mm512_fmadd_ps(wk, x1, c[r][1]);                     \
            c[r][2] = _mm512_fmadd_ps(wk, x2, c[r][2]);                     \
        }                                                                   \
    }

/* The upper 8 lanes (extractf32x8 would need AVX512DQ). */
AVX512 static inline __m256 high256(__m512 v)
{
    return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
}

/* 16 rows of out (ld apart; the first `cols` of them), columns 0..nr of
 * each, [+]= a^T + b: a[r] lane i is column r of row i, transposed in
 * registers into 16 rows of 8 floats. */
AVX512 static inline __attribute__((always_inline)) void
store_group(float *dst, __m512 *a, const float *b, int cols, int nr, int ld,
            int accumulate)
{
    __m512 t[8], u[8];
    __mmask8 nm = (__mmask8)((1u << nr) - 1);
#pragma GCC unroll 8
    for (int r = 0; r < 8; r++)
        if (b && r < nr)
            a[r] = _mm512_add_ps(a[r], _mm512_set1_ps(b[r]));
#pragma GCC unroll 4
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm512_unpacklo_ps(a[i], a[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(a[i], a[i + 1]);
    }
    /* u[4h + q], 128-bit lane L: rows 4h..4h+3 at column 4L + q. */
#pragma GCC unroll 2
    for (int h = 0; h < 8; h += 4) {
        u[h] = _mm512_shuffle_ps(t[h], t[h + 2], 0x44);
        u[h + 1] = _mm512_shuffle_ps(t[h], t[h + 2], 0xee);
        u[h + 2] = _mm512_shuffle_ps(t[h + 1], t[h + 3], 0x44);
        u[h + 3] = _mm512_shuffle_ps(t[h + 1], t[h + 3], 0xee);
    }
#pragma GCC unroll 4
    for (int q = 0; q < 4; q++) {
        /* Columns q, 4 + q (lanes 0, 1) and 8 + q, 12 + q (2, 3). */
        __m512 lo = _mm512_shuffle_f32x4(u[q], u[4 + q], 0x44);
        __m512 hi = _mm512_shuffle_f32x4(u[q], u[4 + q], 0xee);
        lo = _mm512_shuffle_f32x4(lo, lo, 0xd8);
        hi = _mm512_shuffle_f32x4(hi, hi, 0xd8);
        __m256 col[4] = {_mm512_castps512_ps256(lo), high256(lo),
                         _mm512_castps512_ps256(hi), high256(hi)};
#pragma GCC unroll 4
        for (int s = 0; s < 4; s++) {
            int c = q + 4 * s;
            if (c >= cols)
                continue;
            float *d = dst + (size_t)c * ld;
            __m256 v = col[s];
            if (accumulate)
                v = _mm256_add_ps(v, _mm256_maskz_loadu_ps(nm, d));
            _mm256_mask_storeu_ps(d, nm, v);
        }
    }
}

/* out's 48 rows (o->ld apart), columns 0..nr, [+]= the tile (8 x 48) of
 * weight rows w[0..8) (K floats each) times the panel p (K x 48), + b, as
 * o says: stored from the registers it was summed in (with an activation,
 * after it has run on the tile in `tile`). On the way, the rows of the next call, nx
 * (or NULL), are prefetched into L2, so that thin products, which use each
 * row once per chunk, find them there; and out's rows, so that storing
 * does not wait for them. */
AVX512 static void skernel(const float *const *w, const float *const *nx,
                           const float *p, int K, float *tile, float *out,
                           const float *b, int nr, const vit__sgemm_op *o)
{
    int ld = o->ld;
    __m512 c[8][3];
#pragma GCC unroll 8
    for (int r = 0; r < 8; r++)
#pragma GCC unroll 3
        for (int v = 0; v < 3; v++)
            c[r][v] = _mm512_setzero_ps();
    const float *wr[8];
    for (int r = 0; r < 8; r++)
        wr[r] = w[r];
    int k = 0;
    for (; k + 16 <= K; k += 16) {
        if (nx)
            for (int r = 0; r < 8; r++)
                _mm_prefetch((const char *)(nx[r] + k), _MM_HINT_T1);
        if (k < 16 * VIT_SNR)
            _mm_prefetch((const char *)(out + (size_t)(k / 16) * ld),
                         _MM_HINT_T0);
#pragma GCC unroll 16
        for (int kk = 0; kk < 16; kk++)
            SSTEP(k + kk)
    }
    for (; k < K; k++)
        SSTEP(k)
    if (o->act) {
        /* The bias, then the activation over the whole tile in memory. */
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++) {
            __m512 br = _mm512_set1_ps(b && r < nr ? b[r] : 0.0f);
#pragma GCC unroll 3
            for (int v = 0; v < 3; v++)
                _mm512_store_ps(tile + r * VIT_SNR + 16 * v,
                                _mm512_add_ps(c[r][v], br));
        }
        vit__activation(tile, 8 * VIT_SNR, (vit__act)(o->act - 1));
        b = NULL;
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++)
#pragma GCC unroll 3
            for (int v = 0; v < 3; v++)
                c[r][v] = _mm512_load_ps(tile + r * VIT_SNR + 16 * v);
    }
#pragma GCC unroll 3
    for (int v = 0; v < 3; v++) {
        __m512 a[8];
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++)
            a[r] = c[r][v];
        store_group(out + (size_t)v * 16 * ld, a, b, 16, nr, ld,
                    o->accumulate);
    }
}
#undef SSTEP

/* The sums of 8 vectors, in order. */
AVX512 static inline __attribute__((always_inline)) __m256
reduce8(const __m512 *c)
{
    __m512 y[4], z[2];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++)
        y[i] = _mm512_add_ps(_mm512_unpacklo_ps(c[2 * i], c[2 * i + 1]),
                             _mm512_unpackhi_ps(c[2 * i], c[2 * i + 1]));
    /* z[h], 128-bit lane L: lane L's partial sums of c[4h..4h+3]. */
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++)
        z[h] = _mm512_add_ps(_mm512_shuffle_ps(y[2 * h], y[2 * h + 1], 0x44),
                             _mm512_shuffle_ps(y[2 * h], y[2 * h + 1], 0xee));
    __m512 s = _mm512_add_ps(_mm512_shuffle_f32x4(z[0], z[1], 0x88),
                             _mm512_shuffle_f32x4(z[0], z[1], 0xdd));
    s = _mm512_add_ps(s, _mm512_shuffle_f32x4(s, s, 0xb1));
    return _mm512_castps512_ps256(_mm512_shuffle_f32x4(s, s, 0x08));
}

/* out (T rows, o->ld apart; columns n..n+nr) [+]= x (T rows, ldx apart, K
 * floats each) times weight rows w[0..8) + b, as dot products along k: for
 * the rows past a chunk's last whole panel, while those weight rows are in
 * cache. */
AVX512 static inline __attribute__((always_inline)) void
dot_rows(float *out, const float *x, size_t ldx, const float *const *w,
         int K, const float *b, int nr, const vit__sgemm_op *o, const int T)
{
    int ld = o->ld;
    __m512 c[3][8];
#pragma GCC unroll 3
    for (int t = 0; t < T; t++)
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++)
            c[t][r] = _mm512_setzero_ps();
    for (int k = 0; k < K; k += 16) {
        __mmask16 km = K - k < 16 ? (__mmask16)((1u << (K - k)) - 1)
                                  : (__mmask16)0xffff;
        __m512 xv[3];
#pragma GCC unroll 3
        for (int t = 0; t < T; t++)
            xv[t] = _mm512_maskz_loadu_ps(km, x + t * ldx + k);
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++) {
            __m512 wv = _mm512_maskz_loadu_ps(km, w[r] + k);
#pragma GCC unroll 3
            for (int t = 0; t < T; t++)
                c[t][r] = _mm512_fmadd_ps(xv[t], wv, c[t][r]);
        }
    }
    __mmask8 nm = (__mmask8)((1u << nr) - 1);
    __m256 bias = b ? _mm256_maskz_loadu_ps(nm, b) : _mm256_setzero_ps();
#pragma GCC unroll 3
    for (int t = 0; t < T; t++) {
        float *d = out + (size_t)t * ld;
        __m256 v = _mm256_add_ps(reduce8(c[t]), bias);
        if (o->act) {
            float a[8];
            _mm256_storeu_ps(a, v);
            vit__activation(a, 8, (vit__act)(o->act - 1));
            v = _mm256_loadu_ps(a);
        }
        if (o->accumulate)
            v = _mm256_add_ps(v, _mm256_maskz_loadu_ps(nm, d));
        _mm256_mask_storeu_ps(d, nm, v);
    }
}

AVX512 static void dot1(float *out, const float *x, size_t ldx,
                        const float *const *w, int K, const float *b, int nr,
                        const vit__sgemm_op *o)
{
    dot_rows(out, x, ldx, w, K, b, nr, o, 1);
}
AVX512 static void dot2(float *out, const float *x, size_t ldx,
                        const float *const *w, int K, const float *b, int nr,
                        const vit__sgemm_op *o)
{
    dot_rows(out, x, ldx, w, K, b, nr, o, 2);
}
AVX512 static void dot3(float *out, const float *x, size_t ldx,
                        const float *const *w, int K, const float *b, int nr,
                        const vit__sgemm_op *o)
{
    dot_rows(out, x, ldx, w, K, b, nr, o, 3);
}

/* The weight rows of the block of 8 columns from column n of piece i, from
 * k0 on, a short block repeating its last row (those results are not
 * stored); returns the block's columns. */
static int block_rows(const piece *p, int i, int n, int K, int k0,
                      const float **wr)
{
    int nr = p[i].n - n < VIT_SMR ? p[i].n - n : VIT_SMR;
    for (int r = 0; r < VIT_SMR; r++)
        wr[r] = p[i].w + (size_t)(n + (r < nr ? r : nr - 1)) * K + k0;
    return nr;
}

/* Columns kn of k from k0 for rows (a chunk) of x (row stride K): `full`
 * panels packed, the rest as dot products; ep: the epilogue for this k
 * block. */
static void chunk_block(const piece *p, int np, const float *x, int rows,
                        int K, int k0, int kn, const vit__sgemm_op *ep,
                        float *panels)
{
    float tile[8 * VIT_SNR] __attribute__((aligned(64)));
    int full = rows / VIT_SNR, ld = ep->ld;
    for (int i = 0; i < full * 3; i++)
        pack16(panels + (size_t)i / 3 * kn * VIT_SNR, 16 * (i % 3),
               x + (size_t)16 * i * K + k0, (size_t)K, kn);
    /* The blocks of 8 columns, the next one's weight rows in nx. */
    const float *wr[VIT_SMR], *nx[VIT_SMR];
    int i = 0, n = 0, nr = block_rows(p, i, n, K, k0, wr);
    while (nr) {
        int ni = i, nn = n + VIT_SMR;
        if (nn >= p[ni].n)
            ni++, nn = 0;
        int nnr = ni < np ? block_rows(p, ni, nn, K, k0, nx) : 0;
        const float *b = p[i].b && k0 == 0 ? p[i].b + n : NULL;
        float *o = p[i].out + n;
        for (int j = 0; j < full; j++) {
            float *oj = o + (size_t)j * VIT_SNR * ld;
            skernel(wr, j == 0 && nnr ? nx : NULL,
                    panels + (size_t)j * kn * VIT_SNR, kn, tile, oj, b, nr,
                    ep);
        }
        for (int t = full * VIT_SNR; t < rows; t += 3) {
            float *ot = o + (size_t)t * ld;
            const float *xt = x + (size_t)t * K + k0;
            if (rows - t >= 3)
                dot3(ot, xt, (size_t)K, wr, kn, b, nr, ep);
            else if (rows - t == 2)
                dot2(ot, xt, (size_t)K, wr, kn, b, nr, ep);
            else
                dot1(ot, xt, (size_t)K, wr, kn, b, nr, ep);
        }
        i = ni, n = nn, nr = nnr;
        if (nr)
            memcpy(wr, nx, sizeof wr);
    }
}

static void sgemm_avx512(const piece *p, int np, const float *in, int M,
                         int K, const vit__sgemm_op *op, float *pack)
{
    float *panels = (float *)(((uintptr_t)pack + 63) & ~(uintptr_t)63);
    int kc = k_block(K, op->act), cp = chunk_panels(M, kc);
    piece q[3];
    for (int m0 = 0; m0 < M;) {
        /* A chunk: up to cp whole panels, and the last chunk's rows past
         * them. */
        int rows = M - m0;
        if (rows >= (cp + 1) * VIT_SNR)
            rows = cp * VIT_SNR;
        for (int i = 0; i < np; i++) {
            q[i] = p[i];
            q[i].out += (size_t)m0 * op->ld;
        }
        /* The k blocks after the first add to what it stored. */
        vit__sgemm_op ep = *op;
        for (int k0 = 0; k0 < K; k0 += kc) {
            chunk_block(q, np, in + (size_t)m0 * K, rows, K, k0,
                        K - k0 < kc ? K - k0 : kc, &ep, panels);
            ep.accumulate = 1;
        }
        m0 += rows;
    }
}
#endif

static int force_fallback;

void vit__sgemm_force_fallback(int on) { force_fallback = on; }

int vit__sgemm_native(void)
{
#ifdef VIT_HAVE_AVX512_SGEMM
    static int have = -1;
    if (have < 0) {
        __builtin_cpu_init();
        have = __builtin_cpu_supports("avx512f") &&
               __builtin_cpu_supports("avx512vl");
    }
    return have && !force_fallback;
#else
    return 0;
#endif
}

void vit__sgemm(const vit__sgemm_op *o, const float *in, int M, int K,
                int n0, int n1, float *pack)
{
    if (M < 1 || n1 <= n0)
        return;
    piece p[3];
    int np = pieces(o, K, n0, n1, p);
#ifdef VIT_HAVE_AVX512_SGEMM
    if (vit__sgemm_native()) {
        sgemm_avx512(p, np, in, M, K, o, pack);
        return;
    }
#endif
    sgemm_blas(p, np, in, M, K, o);
}
