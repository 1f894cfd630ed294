/*
 * The float32 linear layer of the encoder, out [+]= in @ w^T + b (+ an
 * activation), with w in nn.Linear's (N, K) layout read where it lies (an
 * F32 checkpoint's memory map: it is never copied or packed).
 *
 * One arithmetic on every path. Each output is a chain of fused
 * multiply-adds along k in order, from zero, over a k block (k_block: its
 * length depends on K and on whether there is an activation, never on M);
 * then + the bias, then the activation, then + what out held (accumulating,
 * and each later k block adds its own chain to what the earlier ones
 * stored). An FMA is rounded once, exactly, so a chain has the same bits
 * whatever computes it: a row's outputs do not depend on M, on the row's
 * place among the rows, on how the rows or the columns are split between
 * calls or threads, nor on the path (AVX-512, AVX2 or plain C). An image's
 * result does not depend on the batch it came in.
 *
 * OpenBLAS packs the whole weight matrix on every call, which at the thin
 * products of one image (a few hundred rows, split between threads) costs
 * as much as the multiply, and its rounding depends on the shape. Here the
 * SIMD paths compute the product transposed, C^T = W X^T: the weights are
 * the broadcast operand, read in place, one scalar per row per k, and it is
 * the activations that are packed, per call, into panels transposed
 * (X^T[k][rows], three vectors of rows wide: 48 for AVX-512, 24 for AVX2;
 * M x K floats a call, cheap next to the product). Each lane of an
 * accumulator is one output's chain. A tile is 8 weight rows x 48 (24 zmm
 * accumulators) for AVX-512, 4 x 24 (12 ymm) for AVX2; the epilogue
 * transposes it in registers into out, with the bias and the accumulate.
 * The activations are packed a chunk of panels at a time (what stays in L2
 * next to the weights), and the weights stream past each chunk once, a
 * block of 16 rows serving all of the chunk's panels: one image's rows are
 * one chunk, so a thin product reads its weights once.
 *
 * The rows past a chunk's last whole panel: their whole vectors (16 rows
 * AVX-512, 8 AVX2) as a narrower panel, the few left (fewer than a vector)
 * by a kernel that reads them in place, while the block's weight rows are
 * in cache: it transposes the block's weights in registers, 8 or 16 k at a
 * time, and per k multiplies the vector of its 16 columns (one zmm, two
 * ymm) by the row's activation broadcast, the same chains. Measured on
 * ViT-B's products at one thread: at one image's 197 rows (5 past the
 * panels) 1.5 to 4% faster than padding the last panel with zero rows; at
 * 8 x 197 as fast as padding, and up to 2% faster than computing all the
 * rows past the whole panels in place. Without packing scratch all rows
 * are computed in place.
 *
 * Without a SIMD path (or with VIT_ISA=generic) the same chains are
 * computed with fmaf, a few rows and columns a time in scalars.
 *
 * Dimension legend: M rows (tokens), N output features, K input features.
 */
#include "vit/vit_impl.h"

#include "cpu/cpu.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define VIT_X86_SGEMM 1
#endif

/* Rows of activations packed per chunk: whole panels, as many as fit this
 * many floats (at least one). */
#define CHUNK_FLOATS (160 * 1024)
/* Longest run of k packed at once: longer K is taken in near-equal blocks,
 * so that a chunk holds several panels and the weights are read once per
 * chunk, not once per panel. */
#define KC_MAX 768

/* Columns of a block: the weight rows that stream past a chunk's panels
 * together, and what the row kernel holds of a row (a vector or two:
 * chains enough to cover the FMA's latency with a few rows). */
#define BW 16

static int min_int(int a, int b) { return a < b ? a : b; }

/* bfloat16 to float32: exact (the float's top half). */
static inline float widen1(vit__bf16 h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Whole panels of ph rows in a chunk of M rows' k block of kc. */
static int chunk_panels(int M, int kc, int ph)
{
    int n = CHUNK_FLOATS / ph / kc;
    return min_int(M / ph, n > 0 ? n : 1);
}

/* The k block for K features: all of them with an activation, which needs
 * the whole sum at once. It is the one thing a chain's length depends on,
 * so it depends on nothing else. */
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
    const vit__bf16 *w16; /* its first weight row in bfloat16 instead of w,
                             or NULL */
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
        p[np].w = o->w16[s] ? NULL : o->w[s] + (size_t)c * K;
        p[np].w16 = o->w16[s] ? o->w16[s] + (size_t)c * K : NULL;
        p[np].b = o->b[s] ? o->b[s] + c : NULL;
        p[np].out = o->out[s] + c;
        p[np].n = len;
        np++;
        n += len;
    }
    return np;
}

/* The panel heights of the SIMD paths (three vectors of 16 and of 8
 * rows): the scratch must serve whichever runs. */
static const int panel_rows[] = {3 * 16, 3 * 8};

size_t vit__sgemm_pack_floats(int M, int K)
{
    /* A chunk's whole panels and the narrower one past them: at most
     * M rows, and fewer than one more panel than the chunk's whole ones,
     * at either k block. + 16: 64-byte alignment. */
    size_t most = 0;
    for (int b = 0; b < 2; b++) {
        int kc = b ? k_block(K, 0) : K;
        for (size_t i = 0; i < sizeof panel_rows / sizeof *panel_rows; i++) {
            int ph = panel_rows[i];
            size_t n = (size_t)min_int(M, (chunk_panels(M, kc, ph) + 1) * ph) *
                       (size_t)kc;
            most = n > most ? n : most;
        }
    }
    /* + a block of BW weight rows widened from bfloat16, 64-byte
     * aligned. */
    return most + 16 + (size_t)BW * (size_t)K + 16;
}

/* ---- plain C: the chains with fmaf ---- */

/* A tile of GR rows x GC columns in scalars. */
#define GR 4
#define GC 4

/* Where the CPU has FMA (x86-64: a clone for it), fmaf is inlined and the
 * tile kept in registers; elsewhere it is libm's, exact all the same. */
#ifdef VIT_X86_SGEMM
#define FMA_CLONES __attribute__((target_clones("fma", "default")))
#else
#define FMA_CLONES
#endif

/* out's rows (ld apart: nrows of them, nc columns each) [+]= the chains of
 * x's GR rows with w's GC rows over kn, + b, as act and accumulate say (the
 * rows and columns past nrows and nc repeat the last: not stored). */
FMA_CLONES static void
tile_generic(float *out, size_t ld, const float *const *x,
             const float *const *w, const vit__bf16 *const *w16, int kn,
             const float *b, int nrows, int nc, int act, int accumulate)
{
    float c[GR][GC] = {{0}};
    for (int k = 0; k < kn; k++) {
        float wk[GC];
        for (int j = 0; j < GC; j++)
            wk[j] = w16 ? widen1(w16[j][k]) : w[j][k];
#pragma GCC unroll 4
        for (int r = 0; r < GR; r++)
#pragma GCC unroll 4
            for (int j = 0; j < GC; j++)
                c[r][j] = fmaf(wk[j], x[r][k], c[r][j]);
    }
    for (int r = 0; r < nrows; r++) {
        float v[GC], *d = out + (size_t)r * ld;
        for (int j = 0; j < nc; j++)
            v[j] = b ? c[r][j] + b[j] : c[r][j];
        if (act)
            vit__activation(v, (size_t)nc, (vit__act)(act - 1));
        for (int j = 0; j < nc; j++)
            d[j] = accumulate ? v[j] + d[j] : v[j];
    }
}

static void sgemm_generic(const piece *p, int np, const float *in, int M,
                          int K, const vit__sgemm_op *o)
{
    int kc = k_block(K, o->act);
    for (int i = 0; i < np; i++)
        for (int n = 0; n < p[i].n; n += GC) {
            int nc = min_int(GC, p[i].n - n);
            for (int m = 0; m < M; m += GR) {
                int nrows = min_int(GR, M - m);
                /* The k blocks after the first add to what it stored. */
                for (int k0 = 0; k0 < K; k0 += kc) {
                    const float *w[GC] = {0}, *x[GR];
                    const vit__bf16 *w16[GC] = {0};
                    for (int j = 0; j < GC; j++) {
                        size_t at = (size_t)(n + min_int(j, nc - 1)) * K + k0;
                        if (p[i].w16)
                            w16[j] = p[i].w16 + at;
                        else
                            w[j] = p[i].w + at;
                    }
                    for (int r = 0; r < GR; r++)
                        x[r] = in + (size_t)(m + min_int(r, nrows - 1)) * K +
                               k0;
                    tile_generic(p[i].out + (size_t)m * o->ld + n,
                                 (size_t)o->ld, x, w, p[i].w16 ? w16 : NULL,
                                 min_int(kc, K - k0),
                                 p[i].b && k0 == 0 ? p[i].b + n : NULL, nrows,
                                 nc, o->act, o->accumulate || k0 > 0);
                }
            }
        }
}

/* ---- the SIMD paths ---- */

#ifdef VIT_X86_SGEMM
#define AVX2 __attribute__((target("avx2,fma")))
#define AVX512 __attribute__((target("avx512f,avx512vl,avx2,fma")))
#define ALWAYS inline __attribute__((always_inline))

/* A path's kernels. kernel: out's rows (o->ld apart; `rows` of them, a
 * whole number of vectors) [+]= the product of a block's BW weight rows w
 * (from the k block's start; a short block repeats its last row, nr
 * columns stored) over kn and the panel p (kn x rows, transposed), + b; nx:
 * the next block's weight rows, to prefetch, or NULL. rows: the same for T
 * rows of x (ldx apart) read in place. pack: rows of x (ldx apart) into the
 * panel p (kn x S), rows <= S. */
typedef void kernel_fn(const float *const *w, const float *const *nx,
                       const float *p, int kn, float *out, const float *b,
                       int nr, int rows, const vit__sgemm_op *o);
typedef void rows_fn(float *out, const float *x, size_t ldx,
                     const float *const *w, int kn, const float *b, int nr,
                     int T, const vit__sgemm_op *o);
typedef void pack_fn(float *p, int S, const float *x, size_t ldx, int rows,
                     int kn);

typedef struct {
    int lanes;            /* rows of a vector; a whole panel: three */
    pack_fn *pack;
    kernel_fn *kernel[3]; /* panels of one, two and three vectors */
    rows_fn *rows;
} simd_path;


/* A loop over a count n that is an always_inline function's constant
 * parameter, at most max: it runs to max, a constant, so that it is unrolled
 * (and its arrays are kept in registers) before the function is inlined
 * where n is known, as clang simplifies the callee first. */
#define FOR_UPTO(i, n, max)                                                 \
    for (int i = 0; i < (max); i++)                                         \
        if (i < (n))

/* ---- vectors of W = 8 floats (AVX2) and of 16 (AVX-512): the same
 * operations as vW_*, for the kernels below, written once for both ---- */

typedef __m256 v8;
#define v8_zero _mm256_setzero_ps
#define v8_load _mm256_load_ps
#define v8_loadu _mm256_loadu_ps
#define v8_store _mm256_store_ps
#define v8_set1 _mm256_set1_ps
#define v8_bcast _mm256_broadcast_ss /* from memory: a load, no shuffle */
#define v8_add _mm256_add_ps
#define v8_fma _mm256_fmadd_ps

/* Lanes [0, n) of a mask. */
AVX2 static ALWAYS __m256i mask8(int n)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n),
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* The first n floats at p (n < 1: none) in the first lanes, the rest 0. */
AVX2 static ALWAYS __m256 v8_loadn(const float *p, int n)
{
    return n >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, mask8(n));
}

/* The first n lanes of v (n < 1: none) to p. */
AVX2 static ALWAYS void v8_storen(float *p, __m256 v, int n)
{
    if (n >= 8)
        _mm256_storeu_ps(p, v);
    else
        _mm256_maskstore_ps(p, mask8(n), v);
}

/* The 8 x 8 transpose: r[i] lane j becomes r[j] lane i. */
AVX2 static ALWAYS void v8_transpose(__m256 *r)
{
    __m256 t[8], u[8];
#pragma GCC unroll 4
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    /* u[4a + q]: rows 4a..4a+3 at column q (low half), 4 + q (high). */
#pragma GCC unroll 2
    for (int a = 0; a < 8; a += 4) {
        u[a] = _mm256_shuffle_ps(t[a], t[a + 2], 0x44);
        u[a + 1] = _mm256_shuffle_ps(t[a], t[a + 2], 0xee);
        u[a + 2] = _mm256_shuffle_ps(t[a + 1], t[a + 3], 0x44);
        u[a + 3] = _mm256_shuffle_ps(t[a + 1], t[a + 3], 0xee);
    }
#pragma GCC unroll 4
    for (int q = 0; q < 4; q++) {
        r[q] = _mm256_permute2f128_ps(u[q], u[4 + q], 0x20);
        r[4 + q] = _mm256_permute2f128_ps(u[q], u[4 + q], 0x31);
    }
}

typedef __m512 v16;
#define v16_zero _mm512_setzero_ps
#define v16_load _mm512_load_ps
#define v16_loadu _mm512_loadu_ps
#define v16_store _mm512_store_ps
#define v16_set1 _mm512_set1_ps
#define v16_bcast(p) _mm512_set1_ps(*(p)) /* folded into the FMA */
#define v16_add _mm512_add_ps
#define v16_fma _mm512_fmadd_ps

AVX512 static ALWAYS __mmask16 mask16(int n)
{
    return n >= 16 ? (__mmask16)0xffff
                   : (__mmask16)((1u << (n > 0 ? n : 0)) - 1);
}

AVX512 static ALWAYS __m512 v16_loadn(const float *p, int n)
{
    return _mm512_maskz_loadu_ps(mask16(n), p);
}

AVX512 static ALWAYS void v16_storen(float *p, __m512 v, int n)
{
    _mm512_mask_storeu_ps(p, mask16(n), v);
}

/* The 16 x 16 transpose: r[i] lane j becomes r[j] lane i. */
AVX512 static ALWAYS void v16_transpose(__m512 *r)
{
    __m512 t[16], u[16];
#pragma GCC unroll 8
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    /* u[4a + q], 128-bit lane L: rows 4a..4a+3 at column 4L + q. */
#pragma GCC unroll 4
    for (int a = 0; a < 16; a += 4) {
        u[a] = _mm512_shuffle_ps(t[a], t[a + 2], 0x44);
        u[a + 1] = _mm512_shuffle_ps(t[a], t[a + 2], 0xee);
        u[a + 2] = _mm512_shuffle_ps(t[a + 1], t[a + 3], 0x44);
        u[a + 3] = _mm512_shuffle_ps(t[a + 1], t[a + 3], 0xee);
    }
#pragma GCC unroll 4
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

/* ---- the epilogues' transposes: a tile's accumulators (a weight row's
 * outputs for W activation rows each) into out's rows ---- */

/* 8 rows of out (ld apart; the first `rows`), columns 0..nr (at most 4) of
 * each, [+]= a^T + b: a[r] lane i is column r of row i, transposed in
 * registers (two 4 x 4 at once) into 8 rows of 4 floats. */
AVX2 static ALWAYS void store4(float *dst, __m256 *a, const float *b,
                               int rows, int nr, int ld, int accumulate)
{
    __m256 t[4], u[4];
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++)
        if (b && r < nr)
            a[r] = _mm256_add_ps(a[r], _mm256_set1_ps(b[r]));
    t[0] = _mm256_unpacklo_ps(a[0], a[1]);
    t[1] = _mm256_unpackhi_ps(a[0], a[1]);
    t[2] = _mm256_unpacklo_ps(a[2], a[3]);
    t[3] = _mm256_unpackhi_ps(a[2], a[3]);
    /* u[q]: row q (low half), row 4 + q (high). */
    u[0] = _mm256_shuffle_ps(t[0], t[2], 0x44);
    u[1] = _mm256_shuffle_ps(t[0], t[2], 0xee);
    u[2] = _mm256_shuffle_ps(t[1], t[3], 0x44);
    u[3] = _mm256_shuffle_ps(t[1], t[3], 0xee);
    __m128i m = _mm256_castsi256_si128(mask8(nr));
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {
        if (i >= rows)
            break;
        float *d = dst + (size_t)i * ld;
        __m128 v = i < 4 ? _mm256_castps256_ps128(u[i])
                         : _mm256_extractf128_ps(u[i - 4], 1);
        if (nr == 4) {
            if (accumulate)
                v = _mm_add_ps(v, _mm_loadu_ps(d));
            _mm_storeu_ps(d, v);
        } else {
            if (accumulate)
                v = _mm_add_ps(v, _mm_maskload_ps(d, m));
            _mm_maskstore_ps(d, m, v);
        }
    }
}

/* The upper 8 lanes (extractf32x8 would need AVX512DQ). */
AVX512 static inline __m256 high256(__m512 v)
{
    return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
}

/* 16 rows of out (ld apart; the first `rows`), columns 0..nr (at most 8)
 * of each, [+]= a^T + b: a[r] lane i is column r of row i, transposed in
 * registers into 16 rows of 8 floats. */
AVX512 static ALWAYS void store8(float *dst, __m512 *a, const float *b,
                                 int rows, int nr, int ld, int accumulate)
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
        /* Rows q, 4 + q (lanes 0, 1) and 8 + q, 12 + q (2, 3). */
        __m512 lo = _mm512_shuffle_f32x4(u[q], u[4 + q], 0x44);
        __m512 hi = _mm512_shuffle_f32x4(u[q], u[4 + q], 0xee);
        lo = _mm512_shuffle_f32x4(lo, lo, 0xd8);
        hi = _mm512_shuffle_f32x4(hi, hi, 0xd8);
        __m256 row[4] = {_mm512_castps512_ps256(lo), high256(lo),
                         _mm512_castps512_ps256(hi), high256(hi)};
#pragma GCC unroll 4
        for (int s = 0; s < 4; s++) {
            int i = q + 4 * s;
            if (i >= rows)
                continue;
            float *d = dst + (size_t)i * ld;
            __m256 v = row[s];
            if (accumulate)
                v = _mm256_add_ps(v, _mm256_maskz_loadu_ps(nm, d));
            _mm256_mask_storeu_ps(d, nm, v);
        }
    }
}

/* ---- the kernels of a width W, as macros instantiated for both ---- */

/* transposeW: dst[j * S + i] = src[i][k + j] for i < W, j < kk (at most
 * W; those past kk are stored too, as zeros, where `all`): W rows (those
 * from n on: zeros) transposed in registers. packW: rows of x (ldx apart;
 * the first `rows`, the rest zero) into the panel p (kn x S, S a multiple
 * of W): p[k * S + i] = x[i][k] for k < kn. */
#define PACK_KERNELS(W, TARGET)                                             \
    TARGET static ALWAYS void transpose##W(float *dst, size_t S,            \
                                           const float *const *src, int n,  \
                                           int k, int kk, int all)          \
    {                                                                       \
        v##W r[W];                                                          \
        if (kk >= W)                                                        \
            _Pragma("GCC unroll 16") for (int i = 0; i < W; i++)            \
                r[i] = i < n ? v##W##_loadu(src[i] + k) : v##W##_zero();    \
        else                                                                \
            _Pragma("GCC unroll 16") for (int i = 0; i < W; i++)            \
                r[i] = i < n ? v##W##_loadn(src[i] + k, kk) : v##W##_zero(); \
        v##W##_transpose(r);                                                \
        _Pragma("GCC unroll 16") for (int j = 0; j < W; j++)                \
            if (all || j < kk)                                              \
                v##W##_store(dst + j * S, r[j]);                            \
    }                                                                       \
                                                                            \
    TARGET static void pack##W(float *p, int S, const float *x,             \
                               size_t ldx, int rows, int kn)                \
    {                                                                       \
        for (int l = 0; l < S; l += W) {                                    \
            const float *src[W];                                            \
            for (int i = 0; i < W; i++)                                     \
                src[i] = x + (l + i < rows ? l + i : 0) * ldx;              \
            for (int k = 0; k < kn; k += W)                                 \
                transpose##W(p + (size_t)k * S + l, (size_t)S, src,         \
                             rows - l, k, kn - k, 0);                       \
        }                                                                   \
    }

/* One k step of a tile: the panel's V vectors at k, times each of the NW
 * weight rows' value at k broadcast. */
#define TILE_STEP(W, NW, k)                                                 \
    {                                                                       \
        v##W xv[3];                                                         \
        _Pragma("GCC unroll 3") FOR_UPTO(v, V, 3)                           \
            xv[v] = v##W##_load(p + (size_t)(k) * S + W * v);               \
        _Pragma("GCC unroll 8") for (int r = 0; r < NW; r++)                \
        {                                                                   \
            v##W wk = v##W##_bcast(wr[r] + (k));                            \
            _Pragma("GCC unroll 3") FOR_UPTO(v, V, 3)                       \
                c[r][v] = v##W##_fma(wk, xv[v], c[r][v]);                   \
        }                                                                   \
    }

/* tileW: out's rows (o->ld apart; `rows` of them, at most V W), columns
 * 0..nr (at most NW), [+]= the tile (NW x V W) of weight rows w[0..NW)
 * times the panel p (kn x V W), + b, as o says: summed in NW x V vectors
 * and stored from them by `store` (with an activation, after it has run on
 * the tile in memory). On the way, the next block's weight rows, nx (or
 * NULL), are prefetched into L2, so that thin products, which use each row
 * once per chunk, find them there; and out's rows, so that storing does
 * not wait for them. kernW_V: a block's columns as such tiles, on a panel
 * of V vectors. */
#define TILE_KERNELS(W, NW, TARGET, store)                                  \
    TARGET static ALWAYS void tile##W(                                      \
        const float *const *w, const float *const *nx, const float *p,      \
        int kn, float *out, const float *b, int nr, int rows,               \
        const vit__sgemm_op *o, const int V)                                \
    {                                                                       \
        const int S = W * V;                                                \
        int ld = o->ld;                                                     \
        v##W c[NW][3];                                                      \
        const float *wr[NW];                                                \
        _Pragma("GCC unroll 8") for (int r = 0; r < NW; r++)                \
        {                                                                   \
            wr[r] = w[r];                                                   \
            _Pragma("GCC unroll 3") FOR_UPTO(v, V, 3)                       \
                c[r][v] = v##W##_zero();                                    \
        }                                                                   \
        int k = 0;                                                          \
        for (; k + 16 <= kn; k += 16) {                                     \
            for (int r = 0; nx && r < NW; r++)                              \
                _mm_prefetch((const char *)(nx[r] + k), _MM_HINT_T1);       \
            if (k < 16 * rows)                                              \
                _mm_prefetch((const char *)(out + (size_t)(k / 16) * ld),   \
                             _MM_HINT_T0);                                  \
            _Pragma("GCC unroll 16") for (int kk = 0; kk < 16; kk++)        \
                TILE_STEP(W, NW, k + kk)                                    \
        }                                                                   \
        for (; k < kn; k++)                                                 \
            TILE_STEP(W, NW, k)                                             \
        if (o->act) {                                                       \
            /* The bias, then the activation over the tile in memory. */    \
            float tile[NW * 3 * W] __attribute__((aligned(64)));            \
            _Pragma("GCC unroll 8") for (int r = 0; r < NW; r++)            \
                _Pragma("GCC unroll 3") FOR_UPTO(v, V, 3)                   \
                    v##W##_store(tile + r * S + W * v,                      \
                                 b && r < nr ? v##W##_add(c[r][v],          \
                                                          v##W##_set1(b[r])) \
                                             : c[r][v]);                    \
            vit__activation(tile, (size_t)(NW * S),                         \
                            (vit__act)(o->act - 1));                        \
            b = NULL;                                                       \
            _Pragma("GCC unroll 8") for (int r = 0; r < NW; r++)            \
                _Pragma("GCC unroll 3") FOR_UPTO(v, V, 3)                   \
                    c[r][v] = v##W##_load(tile + r * S + W * v);            \
        }                                                                   \
        _Pragma("GCC unroll 3") FOR_UPTO(v, V, 3)                           \
        {                                                                   \
            v##W a[NW];                                                     \
            _Pragma("GCC unroll 8") for (int r = 0; r < NW; r++)            \
                a[r] = c[r][v];                                             \
            store(out + (size_t)v * W * ld, a, b, rows - W * v, nr, ld,     \
                  o->accumulate);                                           \
        }                                                                   \
    }                                                                       \
                                                                            \
    TARGET static ALWAYS void block##W(                                     \
        const float *const *w, const float *const *nx, const float *p,      \
        int kn, float *out, const float *b, int nr, int rows,               \
        const vit__sgemm_op *o, const int V)                                \
    {                                                                       \
        for (int h = 0; h < nr; h += NW)                                    \
            tile##W(w + h, nx ? nx + h : NULL, p, kn, out + h,              \
                    b ? b + h : NULL, min_int(nr - h, NW), rows, o, V);     \
    }                                                                       \
    TILE_PANEL(W, TARGET, 1)                                                \
    TILE_PANEL(W, TARGET, 2)                                                \
    TILE_PANEL(W, TARGET, 3)
#define TILE_PANEL(W, TARGET, V)                                            \
    TARGET static void kern##W##_##V(                                       \
        const float *const *w, const float *const *nx, const float *p,      \
        int kn, float *out, const float *b, int nr, int rows,               \
        const vit__sgemm_op *o)                                             \
    {                                                                       \
        block##W(w, nx, p, kn, out, b, nr, rows, o, V);                     \
    }

/* T rows in groups of at most G: near-equal ones past 2 G, so that no
 * group is left with a row or two (few chains) when more are at hand. */
#define ROW_GROUP(T, G) ((T) <= (G) ? (T) : (T) < 2 * (G) ? (T) / 2 : (G))

/* rowsW: the row kernel for T (constant, at most TMAX) rows read in place,
 * row t's chains of the block's BW columns in BW / W vectors c[t]: per k, a
 * vector of weights times x[t][k] broadcast. The block's weights are
 * transposed W k at a time, the next W into the other half of wt while the
 * FMAs of these wait on each other. rows_allW: any number of rows, in
 * groups. row_storeW: one row's n columns (n < 1: none) of v [+]= as o
 * says, + b. */
#define ROWS_KERNELS(W, TMAX, TARGET)                                       \
    TARGET static ALWAYS void row_store##W(float *d, v##W v, const float *b, \
                                           int n, const vit__sgemm_op *o)  \
    {                                                                       \
        if (n < 1)                                                          \
            return;                                                         \
        if (b)                                                              \
            v = v##W##_add(v, v##W##_loadn(b, n));                          \
        if (o->act) {                                                       \
            float a[W];                                                     \
            v##W##_storen(a, v, W);                                         \
            vit__activation(a, W, (vit__act)(o->act - 1));                  \
            v = v##W##_loadn(a, W);                                         \
        }                                                                   \
        if (o->accumulate)                                                  \
            v = v##W##_add(v, v##W##_loadn(d, n));                          \
        v##W##_storen(d, v, n);                                             \
    }                                                                       \
                                                                            \
    TARGET static ALWAYS void wtranspose##W(float *wt, const float *const *w, \
                                            int k, int kk)                  \
    {                                                                       \
        _Pragma("GCC unroll 2") for (int h = 0; h < BW; h += W)             \
            transpose##W(wt + h, BW, w + h, W, k, kk, 1);                   \
    }                                                                       \
                                                                            \
    TARGET static ALWAYS void rows##W(float *out, const float *x,           \
                                      size_t ldx, const float *const *w,    \
                                      int kn, const float *b, int nr,       \
                                      const vit__sgemm_op *o, const int T)  \
    {                                                                       \
        enum { Q = BW / W };                                                \
        float wt[2 * W * BW] __attribute__((aligned(64)));                  \
        v##W c[TMAX][Q];                                                    \
        const float *xr[TMAX];                                              \
        _Pragma("GCC unroll 16") FOR_UPTO(t, T, TMAX)                       \
        {                                                                   \
            xr[t] = x + t * ldx;                                            \
            _Pragma("GCC unroll 2") for (int q = 0; q < Q; q++)             \
                c[t][q] = v##W##_zero();                                    \
        }                                                                   \
        wtranspose##W(wt, w, 0, kn);                                        \
        for (int k = 0; k < kn; k += W) {                                   \
            float *cur = wt + (k / W & 1) * W * BW;                         \
            if (k + W < kn)                                                 \
                wtranspose##W(wt + ((k + W) / W & 1) * W * BW, w, k + W,    \
                              kn - k - W);                                  \
            if (kn - k >= W) {                                              \
                _Pragma("GCC unroll 16") for (int j = 0; j < W; j++)        \
                    ROWS_STEP(W, TMAX, cur + BW * j, k + j)                 \
            } else                                                          \
                for (int j = 0; j < kn - k; j++)                            \
                    ROWS_STEP(W, TMAX, cur + BW * j, k + j)                 \
        }                                                                   \
        _Pragma("GCC unroll 16") FOR_UPTO(t, T, TMAX)                       \
            _Pragma("GCC unroll 2") for (int q = 0; q < Q; q++)             \
                row_store##W(out + (size_t)t * o->ld + q * W, c[t][q],      \
                             b ? b + q * W : NULL, nr - q * W, o);          \
    }                                                                       \
                                                                            \
    TARGET static void rows_all##W(float *out, const float *x, size_t ldx,  \
                                   const float *const *w, int kn,           \
                                   const float *b, int nr, int T,           \
                                   const vit__sgemm_op *o)                  \
    {                                                                       \
        for (int g; T > 0; T -= g, x += g * ldx, out += (size_t)g * o->ld) { \
            g = ROW_GROUP(T, TMAX);                                         \
            switch (g) {                                                    \
                ROWS_CASE(W, TMAX, 1)                                       \
                ROWS_CASE(W, TMAX, 2)                                       \
                ROWS_CASE(W, TMAX, 3)                                       \
                ROWS_CASE(W, TMAX, 4)                                       \
                ROWS_CASE(W, TMAX, 5)                                       \
                ROWS_CASE(W, TMAX, 6)                                       \
                ROWS_CASE(W, TMAX, 7)                                       \
                ROWS_CASE(W, TMAX, 8)                                       \
                ROWS_CASE(W, TMAX, 9)                                       \
                ROWS_CASE(W, TMAX, 10)                                      \
                ROWS_CASE(W, TMAX, 11)                                      \
                ROWS_CASE(W, TMAX, 12)                                      \
                ROWS_CASE(W, TMAX, 13)                                      \
                ROWS_CASE(W, TMAX, 14)                                      \
                ROWS_CASE(W, TMAX, 15)                                      \
                ROWS_CASE(W, TMAX, 16)                                      \
            }                                                               \
        }                                                                   \
    }
/* A k step of the row kernel: wj, the block's BW weights at k. */
#define ROWS_STEP(W, TMAX, wj, k)                                           \
    {                                                                       \
        v##W wv[BW / W];                                                    \
        _Pragma("GCC unroll 2") for (int q = 0; q < BW / W; q++)            \
            wv[q] = v##W##_load((wj) + q * W);                              \
        _Pragma("GCC unroll 16") FOR_UPTO(t, T, TMAX)                       \
        {                                                                   \
            v##W xt = v##W##_bcast(xr[t] + (k));                            \
            _Pragma("GCC unroll 2") for (int q = 0; q < BW / W; q++)        \
                c[t][q] = v##W##_fma(wv[q], xt, c[t][q]);                   \
        }                                                                   \
    }
/* The cases past TMAX are never taken (ROW_GROUP) and compile to nothing. */
#define ROWS_CASE(W, TMAX, n)                                               \
    case n:                                                                 \
        if (n <= TMAX)                                                      \
            rows##W(out, x, ldx, w, kn, b, nr, o, n);                       \
        break;

/* AVX2: tiles of 4 weight rows x 1-3 vectors of 8 rows (12 accumulators
 * and the panel's vectors in 16 registers); rows in place 6 at a time. */
PACK_KERNELS(8, AVX2)
TILE_KERNELS(8, 4, AVX2, store4)
ROWS_KERNELS(8, 6, AVX2)

static const simd_path avx2_path = {
    8, pack8, {kern8_1, kern8_2, kern8_3}, rows_all8};

/* AVX-512: tiles of 8 weight rows x 1-3 vectors of 16 rows (24
 * accumulators); rows in place up to 16 at a time. */
PACK_KERNELS(16, AVX512)
TILE_KERNELS(16, 8, AVX512, store8)
ROWS_KERNELS(16, 16, AVX512)

static const simd_path avx512_path = {
    16, pack16, {kern16_1, kern16_2, kern16_3}, rows_all16};

/* ---- the SIMD driver ---- */

/* The weight rows of the block of BW columns from column n of piece i,
 * from k0 on, a short block repeating its last row (those results are not
 * stored); returns the block's columns. bfloat16 weights: NULLs, until
 * widen_block gives the rows. */
static int block_rows(const piece *p, int i, int n, int K, int k0,
                      const float **wr)
{
    int nr = min_int(p[i].n - n, BW);
    for (int r = 0; r < BW; r++)
        wr[r] = p[i].w16 ? NULL
                         : p[i].w + (size_t)(n + min_int(r, nr - 1)) * K + k0;
    return nr;
}

/* The nr bfloat16 weight rows of that block, kn of k from k0, widened into
 * buf (BW x kn) for the kernels; wr as block_rows gives it. Both SIMD
 * paths have AVX2: eight at a time, a zero-extend and a shift. */
AVX2 static void widen_block(const piece *p, int i, int n, int K, int k0,
                             int kn, int nr, float *buf, const float **wr)
{
    for (int r = 0; r < nr; r++) {
        const vit__bf16 *src = p[i].w16 + (size_t)(n + r) * K + k0;
        float *dst = buf + (size_t)r * kn;
        int k = 0;
        for (; k + 8 <= kn; k += 8) {
            __m256i h = _mm256_cvtepu16_epi32(
                _mm_loadu_si128((const __m128i *)(src + k)));
            _mm256_storeu_si256((__m256i *)(dst + k),
                                _mm256_slli_epi32(h, 16));
        }
        for (; k < kn; k++)
            dst[k] = widen1(src[k]);
    }
    for (int r = 0; r < BW; r++)
        wr[r] = buf + (size_t)min_int(r, nr - 1) * kn;
}

/* Columns kn of k from k0 for rows (a chunk) of x (row stride K): whole
 * panels and the narrower one past them packed (with scratch), the rest in
 * place; ep: the epilogue for this k block. wbuf: room for a block of
 * bfloat16 weight rows widened (BW x kn), when a piece has them. */
static void chunk_block(const simd_path *P, const piece *p, int np,
                        const float *x, int rows, int K, int k0, int kn,
                        const vit__sgemm_op *ep, float *panels, float *wbuf)
{
    int L = P->lanes, ph = 3 * L, ld = ep->ld;
    int full = panels ? rows / ph : 0;
    int part = panels ? (rows - full * ph) / L : 0; /* its vectors */
    int packed = full * ph + part * L;
    for (int j = 0; j < full; j++)
        P->pack(panels + (size_t)j * kn * ph, ph, x + (size_t)j * ph * K + k0,
                (size_t)K, ph, kn);
    if (part)
        P->pack(panels + (size_t)full * kn * ph, part * L,
                x + (size_t)full * ph * K + k0, (size_t)K, part * L, kn);
    /* The blocks of BW columns, the next one's weight rows in nx. */
    const float *wr[BW], *nx[BW];
    int i = 0, n = 0, nr = block_rows(p, i, n, K, k0, wr);
    while (nr) {
        int ni = i, nn = n + BW;
        if (nn >= p[ni].n)
            ni++, nn = 0;
        int nnr = ni < np ? block_rows(p, ni, nn, K, k0, nx) : 0;
        const float *b = p[i].b && k0 == 0 ? p[i].b + n : NULL;
        float *o = p[i].out + n;
        if (p[i].w16)
            widen_block(p, i, n, K, k0, kn, nr, wbuf, wr);
        /* The next block's rows to prefetch: not bfloat16 ones, which are
         * read once, by widen_block. */
        int pf = nnr && !p[ni].w16;
        for (int j = 0; j <= full; j++) {
            int v = j < full ? 3 : part;
            if (v)
                P->kernel[v - 1](wr, j == 0 && pf ? nx : NULL,
                                 panels + (size_t)j * kn * ph, kn,
                                 o + (size_t)j * ph * ld, b, nr, v * L, ep);
        }
        if (packed < rows)
            P->rows(o + (size_t)packed * ld, x + (size_t)packed * K + k0,
                    (size_t)K, wr, kn, b, nr, rows - packed, ep);
        i = ni, n = nn, nr = nnr;
        if (nr)
            memcpy(wr, nx, sizeof wr);
    }
}

static void sgemm_simd(const simd_path *P, const piece *p, int np,
                       const float *in, int M, int K, const vit__sgemm_op *op,
                       float *pack)
{
    float *panels =
        pack ? (float *)(((uintptr_t)pack + 63) & ~(uintptr_t)63) : NULL;
    int ph = 3 * P->lanes, kc = k_block(K, op->act);
    int cp = panels ? chunk_panels(M, kc, ph) : 0;
    /* The widened weight block lies past the most the panels take. */
    float *wbuf = NULL;
    if (pack) {
        size_t wb = vit__sgemm_pack_floats(M, K) - 16 - (size_t)BW * K;
        wbuf = (float *)(((uintptr_t)(pack + wb) + 63) & ~(uintptr_t)63);
    }
    piece q[3];
    for (int m0 = 0; m0 < M;) {
        /* A chunk: up to cp whole panels, and the last chunk's rows past
         * them; without scratch, all rows in place. */
        int rows = M - m0;
        if (cp && rows >= (cp + 1) * ph)
            rows = cp * ph;
        for (int i = 0; i < np; i++) {
            q[i] = p[i];
            q[i].out += (size_t)m0 * op->ld;
        }
        /* The k blocks after the first add to what it stored. */
        vit__sgemm_op ep = *op;
        for (int k0 = 0; k0 < K; k0 += kc) {
            chunk_block(P, q, np, in + (size_t)m0 * K, rows, K, k0,
                        min_int(kc, K - k0), &ep, panels, wbuf);
            ep.accumulate = 1;
        }
        m0 += rows;
    }
}
#endif

/* ---- the path ---- */

static int forced = -1;

int vit__sgemm_force_isa(int isa)
{
    forced = isa;
    return vit__sgemm_isa();
}

int vit__sgemm_isa(void)
{
#ifdef VIT_X86_SGEMM
    int best = cpu_avx512()  ? CPU_ISA_AVX512
               : cpu_avx2() ? CPU_ISA_AVX2
                            : CPU_ISA_GENERIC;
#else
    int best = CPU_ISA_GENERIC;
#endif
    return forced >= 0 && forced < best ? forced : best;
}

void vit__sgemm(const vit__sgemm_op *o, const float *in, int M, int K,
                int n0, int n1, float *pack)
{
    if (M < 1 || n1 <= n0)
        return;
    piece p[3];
    int np = pieces(o, K, n0, n1, p);
#ifdef VIT_X86_SGEMM
    /* bfloat16 weights are widened into the scratch; without it, the
     * plain C path widens them one at a time (the same chains). */
    int w16 = 0;
    for (int i = 0; i < np; i++)
        w16 |= p[i].w16 != NULL;
    switch (w16 && !pack ? CPU_ISA_GENERIC : vit__sgemm_isa()) {
    case CPU_ISA_AVX512:
        sgemm_simd(&avx512_path, p, np, in, M, K, o, pack);
        return;
    case CPU_ISA_AVX2:
        sgemm_simd(&avx2_path, p, np, in, M, K, o, pack);
        return;
    }
#endif
    sgemm_generic(p, np, in, M, K, o);
}
