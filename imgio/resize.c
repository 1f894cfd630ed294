/*
 * Resampling as Pillow's Image.resize does it for 8-bit RGB images
 * (libImaging/Resample.c and, for NEAREST, the affine scaling path of
 * Geometry.c), re-derived from its definition so that the output matches
 * Pillow's to the bit: a separable convolution in two passes whose order
 * follows Pillow 13's rule (see img_resize), each pass skipped when its
 * side does not change; the filter widened by the scale when shrinking;
 * per-pixel weights computed in double, normalized to sum to one, then
 * rounded to 22-bit fixed point; sums started at one half and clamped to
 * 0..255 after each pass, so the intermediate image is 8-bit too.
 */
#include "imgio/imgio_impl.h"
#include "cpu/cpu.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* 8 bits of result, 2 bits of headroom for filters whose partial sums
 * overshoot, the rest fraction: Pillow's choice, which the rounding of the
 * weights depends on. */
#define PRECISION_BITS (32 - 8 - 2)

typedef struct {
    double (*fn)(double x);
    double support;  /* half-width of the kernel at scale 1 */
} filter;

/* The kernels, with Pillow's exact comparisons at the edges (a box is
 * half-open on the left, the others are zero at their support) and its
 * float constants in Hamming, since a different rounding there would move
 * some weights by one unit in the last fixed-point bit. */
static double box_fn(double x) { return (x > -0.5 && x <= 0.5) ? 1.0 : 0.0; }

static double bilinear_fn(double x)
{
    x = fabs(x);
    return x < 1.0 ? 1.0 - x : 0.0;
}

static double hamming_fn(double x)
{
    x = fabs(x);
    if (x == 0.0)
        return 1.0;
    if (x >= 1.0)
        return 0.0;
    x *= M_PI;
    return sin(x) / x * (0.54f + 0.46f * cos(x));
}

static double bicubic_fn(double x)
{
    const double a = -0.5;
    x = fabs(x);
    if (x < 1.0)
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0)
        return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

double img_sinc(double x)
{
    if (x == 0.0)
        return 1.0;
    x *= M_PI;
    return sin(x) / x;
}

static double lanczos_fn(double x)
{
    return (-3.0 <= x && x < 3.0) ? img_sinc(x) * img_sinc(x / 3) : 0.0;
}

static const filter *filter_for(img_filter f)
{
    static const filter box = {box_fn, 0.5};
    static const filter bilinear = {bilinear_fn, 1.0};
    static const filter hamming = {hamming_fn, 1.0};
    static const filter bicubic = {bicubic_fn, 2.0};
    static const filter lanczos = {lanczos_fn, 3.0};
    switch (f) {
    case IMG_BOX:
        return &box;
    case IMG_BILINEAR:
        return &bilinear;
    case IMG_HAMMING:
        return &hamming;
    case IMG_BICUBIC:
        return &bicubic;
    case IMG_LANCZOS:
        return &lanczos;
    case IMG_NEAREST:
        break;
    }
    return NULL;
}

/* The weights of one pass, for outputs [o0, o0 + n): output position i
 * reads `len[i - o0]` inputs starting at `first[i - o0]`, with fixed-point
 * weights k[(i - o0) * ksize ...]. Only the window preprocessing keeps is
 * built: a 1-pixel-tall image stated 2 million pixels wide would otherwise
 * ask for tens of millions of columns' weights to compute a crop of 224. */
typedef struct {
    int ksize, o0;
    int *first;    /* (n) */
    int *len;      /* (n) */
    int32_t *k;    /* (n, ksize) */
} coeffs;

#define CF_FIRST(c, i) ((c)->first[(i) - (c)->o0])
#define CF_LEN(c, i) ((c)->len[(i) - (c)->o0])
#define CF_K(c, i) ((c)->k + (size_t)((i) - (c)->o0) * (size_t)(c)->ksize)

/* Safe to call twice and on a zeroed struct. */
static void coeffs_free(coeffs *c)
{
    free(c->first);
    free(c->len);
    free(c->k);
    c->first = c->len = NULL;
    c->k = NULL;
}

/* Computes the weights that map in_size samples onto out_size, as Pillow's
 * precompute_coeffs and normalize_coeffs_8bpc do, for outputs [o0, o0 +
 * n). Returns 0 when out of memory. */
static int coeffs_build(coeffs *c, int in_size, int out_size, const filter *f,
                        int o0, int n_out)
{
    /* Pillow passes the source extent as a float box; for whole images the
     * float holds the integer exactly, so the double below is the same. */
    double scale = (double)in_size / out_size;
    double fscale = scale < 1.0 ? 1.0 : scale;
    double support = f->support * fscale;
    double ss = 1.0 / fscale;
    int ksize = (int)ceil(support) * 2 + 1;
    double *w = malloc((size_t)ksize * sizeof *w);
    c->ksize = ksize;
    c->o0 = o0;
    c->first = malloc((size_t)n_out * sizeof *c->first);
    c->len = malloc((size_t)n_out * sizeof *c->len);
    c->k = calloc((size_t)n_out * (size_t)ksize, sizeof *c->k);
    if (!w || !c->first || !c->len || !c->k) {
        free(w);
        coeffs_free(c);
        return 0;
    }
    for (int i = o0; i < o0 + n_out; i++) {
        double center = (i + 0.5) * scale;
        /* (int) truncates toward zero, as in Pillow, before the clamp. */
        int lo = (int)(center - support + 0.5);
        int hi = (int)(center + support + 0.5);
        if (lo < 0)
            lo = 0;
        if (hi > in_size)
            hi = in_size;
        int n = hi - lo;
        double sum = 0.0;
        for (int j = 0; j < n; j++) {
            w[j] = f->fn((j + lo - center + 0.5) * ss);
            sum += w[j];
        }
        int32_t *k = c->k + (size_t)(i - o0) * (size_t)ksize;
        for (int j = 0; j < n; j++) {
            double v = sum != 0.0 ? w[j] / sum : w[j];
            /* Round half away from zero, then truncate toward zero. */
            k[j] = v < 0 ? (int32_t)(-0.5 + v * (1 << PRECISION_BITS))
                         : (int32_t)(0.5 + v * (1 << PRECISION_BITS));
        }
        c->first[i - o0] = lo;
        c->len[i - o0] = n;
    }
    free(w);
    return 1;
}

/* The fixed-point sum back to 0..255. Pillow shifts (rounding toward minus
 * infinity, the half having been added at the start) and clamps. */
static inline uint8_t clip8(int32_t v)
{
    if (v < 0)
        return 0;
    v >>= PRECISION_BITS;
    return v > 255 ? 255 : (uint8_t)v;
}

/* The SIMD paths are for x86-64 with GCC or clang, chosen at run time so
 * that the library still runs on any x86-64; elsewhere the plain loops
 * run (and are what the vectorizer sees). Both give identical bytes: the
 * arithmetic is the same 32-bit integer sums in the same order per value
 * (integer addition is associative, so lane order cannot matter). */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define IMG_X86 1
#include <immintrin.h>
#else
#define IMG_X86 0
#endif

/* Horizontal pass over `rows` rows of src (each `sw_px` pixels from
 * column `col0` on, rows `sstride` bytes apart) into dst (rows `dstride`
 * bytes apart), for output columns [x0, x0 + nx). */
static void hpass_plain(uint8_t *dst, size_t dstride, const uint8_t *src,
                        size_t sstride, int col0, int rows, const coeffs *c,
                        int x0, int nx)
{
    for (int y = 0; y < rows; y++) {
        const uint8_t *in = src + (size_t)y * sstride;
        uint8_t *o = dst + (size_t)y * dstride;
        for (int x = x0; x < x0 + nx; x++, o += 3) {
            const int32_t *k = CF_K(c, x);
            const uint8_t *p = in + (size_t)(CF_FIRST(c, x) - col0) * 3;
            int32_t s0 = 1 << (PRECISION_BITS - 1), s1 = s0, s2 = s0;
            for (int j = 0; j < CF_LEN(c, x); j++, p += 3) {
                s0 += p[0] * k[j];
                s1 += p[1] * k[j];
                s2 += p[2] * k[j];
            }
            o[0] = clip8(s0);
            o[1] = clip8(s1);
            o[2] = clip8(s2);
        }
    }
}

#if IMG_X86
/* The same with 16-bit multiply-adds. A weight k is split exactly into
 * k = 256 * hi + lo with lo in 0..255 and hi a signed 16-bit value (the
 * weights are below 2^23 in magnitude), so that pmaddwd, which multiplies
 * 16-bit pairs and adds adjacent products into 32 bits, can do two taps
 * of all three channels at once: one 8-byte load holds pixels j and j+1,
 * a shuffle spreads them into (R_j, R_j+1, G_j, G_j+1, B_j, B_j+1, 0, 0)
 * and two pmaddwd against (hi_j, hi_j+1, ...) and (lo_j, lo_j+1, ...)
 * give the three partial sums of each half. The total, 256 * sum_hi +
 * sum_lo plus the rounding half, is the very integer the plain loop
 * computes. Each pair of taps costs six instructions instead of about
 * twelve. The weights are laid out once per pass: for output x and pair
 * p, 8 words of hi then 8 of lo. */
typedef struct {
    int npairs;   /* pairs of taps per output: (ksize + 1) / 2 */
    int16_t *kw;  /* (out, npairs, 16) */
} pair_weights;

static int pair_weights_build(pair_weights *pw, const coeffs *c, int x0,
                              int nx)
{
    pw->npairs = (c->ksize + 1) / 2;
    pw->kw = calloc((size_t)nx * (size_t)pw->npairs * 16, sizeof *pw->kw);
    if (!pw->kw)
        return 0;
    for (int x = 0; x < nx; x++) {
        const int32_t *k = CF_K(c, x0 + x);
        int16_t *w = pw->kw + (size_t)x * (size_t)pw->npairs * 16;
        for (int j = 0; j < CF_LEN(c, x0 + x); j++) {
            int32_t hi = k[j] >> 8, lo = k[j] & 0xff;
            if (hi < INT16_MIN || hi > INT16_MAX) {
                free(pw->kw);
                pw->kw = NULL;
                return 0;
            }
            int16_t *q = w + (j / 2) * 16 + (j % 2);
            for (int ch = 0; ch < 3; ch++) {
                q[2 * ch] = (int16_t)hi;
                q[8 + 2 * ch] = (int16_t)lo;
            }
        }
    }
    return 1;
}

/* The taps pmaddwd could not take (an odd last one, or those whose load
 * would pass the row's end), at full precision, then the sum's rounding
 * and clamping, and the three bytes out. */
__attribute__((target("ssse3"), always_inline)) static inline void
finish_pixel(uint8_t *o, __m128i hi, __m128i lo, const uint8_t *p,
             const int32_t *k, int j, int n)
{
    int32_t t0 = 0, t1 = 0, t2 = 0;
    for (; j < n; j++, p += 3) {
        t0 += p[0] * k[j];
        t1 += p[1] * k[j];
        t2 += p[2] * k[j];
    }
    __m128i acc = _mm_add_epi32(_mm_slli_epi32(hi, 8), lo);
    acc = _mm_add_epi32(acc, _mm_setr_epi32(t0, t1, t2, 0));
    acc = _mm_add_epi32(acc, _mm_set1_epi32(1 << (PRECISION_BITS - 1)));
    /* clip8 on four lanes: the arithmetic shift keeps negatives negative,
     * and the two saturating packs clamp to 0..255. */
    __m128i v = _mm_srai_epi32(acc, PRECISION_BITS);
    v = _mm_packus_epi16(_mm_packs_epi32(v, v), v);
    int32_t px = _mm_cvtsi128_si32(v);
    memcpy(o, &px, 3);
}

/* Two rows at a time, so that each pair of weights loaded serves both. */
__attribute__((target("ssse3"), always_inline)) static inline void
hpass_pairs(uint8_t *dst, size_t dstride, const uint8_t *src, size_t sstride,
            int col0, int sw_px, int rows, const coeffs *c,
            const pair_weights *pw, int x0, int nx)
{
    /* Bytes R0 G0 B0 R1 G1 B1 of a load into words R0 R1 G0 G1 B0 B1. */
    const __m128i spread = _mm_setr_epi8(0, -1, 3, -1, 1, -1, 4, -1, 2, -1,
                                         5, -1, -1, -1, -1, -1);
    for (int y = 0; y < rows; y += 2) {
        int two = y + 1 < rows;
        const uint8_t *in0 = src + (size_t)y * sstride;
        const uint8_t *in1 = two ? in0 + sstride : in0;
        uint8_t *o0 = dst + (size_t)y * dstride, *o1 = o0 + dstride;
        for (int x = x0; x < x0 + nx; x++, o0 += 3, o1 += 3) {
            const int32_t *k = CF_K(c, x);
            const __m128i *w =
                (const __m128i *)(pw->kw + (size_t)(x - x0) *
                                               (size_t)pw->npairs * 16);
            int f = CF_FIRST(c, x) - col0, n = CF_LEN(c, x);
            /* Pairs whose 8-byte load stays inside the row. */
            int pairs = n / 2;
            if (pairs > 0 && f + 2 * pairs - 2 > sw_px - 3)
                pairs = sw_px - 3 - f >= 0 ? (sw_px - 3 - f) / 2 + 1 : 0;
            const uint8_t *p0 = in0 + (size_t)f * 3, *p1 = in1 + (size_t)f * 3;
            __m128i hi0 = _mm_setzero_si128(), lo0 = hi0, hi1 = hi0,
                    lo1 = hi0;
            for (int q = 0; q < pairs; q++, p0 += 6, p1 += 6, w += 2) {
                __m128i wh = _mm_loadu_si128(w), wl = _mm_loadu_si128(w + 1);
                __m128i v0 = _mm_shuffle_epi8(
                    _mm_loadl_epi64((const __m128i *)p0), spread);
                __m128i v1 = _mm_shuffle_epi8(
                    _mm_loadl_epi64((const __m128i *)p1), spread);
                hi0 = _mm_add_epi32(hi0, _mm_madd_epi16(v0, wh));
                lo0 = _mm_add_epi32(lo0, _mm_madd_epi16(v0, wl));
                hi1 = _mm_add_epi32(hi1, _mm_madd_epi16(v1, wh));
                lo1 = _mm_add_epi32(lo1, _mm_madd_epi16(v1, wl));
            }
            finish_pixel(o0, hi0, lo0, p0, k, 2 * pairs, n);
            if (two)
                finish_pixel(o1, hi1, lo1, p1, k, 2 * pairs, n);
        }
    }
}

__attribute__((target("ssse3"))) static void
hpass_ssse3(uint8_t *dst, size_t dstride, const uint8_t *src, size_t sstride,
            int col0, int sw_px, int rows, const coeffs *c,
            const pair_weights *pw, int x0, int nx)
{
    hpass_pairs(dst, dstride, src, sstride, col0, sw_px, rows, c, pw, x0, nx);
}

/* With AVX2, four rows at a time: rows y and y+1 in the two 128-bit
 * halves of one register, y+2 and y+3 in another, the same weights
 * broadcast to both halves; a leftover one to three rows go through the
 * SSSE3 kernel. */
__attribute__((target("avx2"))) static void
hpass_avx2(uint8_t *dst, size_t dstride, const uint8_t *src, size_t sstride,
           int col0, int sw_px, int rows, const coeffs *c,
           const pair_weights *pw, int x0, int nx)
{
    const __m256i spread = _mm256_broadcastsi128_si256(_mm_setr_epi8(
        0, -1, 3, -1, 1, -1, 4, -1, 2, -1, 5, -1, -1, -1, -1, -1));
    int y = 0;
    for (; y + 4 <= rows; y += 4) {
        const uint8_t *in = src + (size_t)y * sstride;
        uint8_t *o = dst + (size_t)y * dstride;
        for (int x = x0; x < x0 + nx; x++, o += 3) {
            const int32_t *k = CF_K(c, x);
            const __m128i *w =
                (const __m128i *)(pw->kw + (size_t)(x - x0) *
                                               (size_t)pw->npairs * 16);
            int f = CF_FIRST(c, x) - col0, n = CF_LEN(c, x);
            int pairs = n / 2;
            if (pairs > 0 && f + 2 * pairs - 2 > sw_px - 3)
                pairs = sw_px - 3 - f >= 0 ? (sw_px - 3 - f) / 2 + 1 : 0;
            const uint8_t *p = in + (size_t)f * 3;
            __m256i hia = _mm256_setzero_si256(), loa = hia, hib = hia,
                    lob = hia;
            for (int q = 0; q < pairs; q++, p += 6, w += 2) {
                __m256i wh = _mm256_broadcastsi128_si256(_mm_loadu_si128(w));
                __m256i wl =
                    _mm256_broadcastsi128_si256(_mm_loadu_si128(w + 1));
                __m256i va = _mm256_inserti128_si256(
                    _mm256_castsi128_si256(
                        _mm_loadl_epi64((const __m128i *)p)),
                    _mm_loadl_epi64((const __m128i *)(p + sstride)), 1);
                __m256i vb = _mm256_inserti128_si256(
                    _mm256_castsi128_si256(
                        _mm_loadl_epi64((const __m128i *)(p + 2 * sstride))),
                    _mm_loadl_epi64((const __m128i *)(p + 3 * sstride)), 1);
                va = _mm256_shuffle_epi8(va, spread);
                vb = _mm256_shuffle_epi8(vb, spread);
                hia = _mm256_add_epi32(hia, _mm256_madd_epi16(va, wh));
                loa = _mm256_add_epi32(loa, _mm256_madd_epi16(va, wl));
                hib = _mm256_add_epi32(hib, _mm256_madd_epi16(vb, wh));
                lob = _mm256_add_epi32(lob, _mm256_madd_epi16(vb, wl));
            }
            const uint8_t *pr = in + (size_t)(f + 2 * pairs) * 3;
            finish_pixel(o, _mm256_castsi256_si128(hia),
                         _mm256_castsi256_si128(loa), pr, k, 2 * pairs, n);
            finish_pixel(o + dstride, _mm256_extracti128_si256(hia, 1),
                         _mm256_extracti128_si256(loa, 1), pr + sstride, k,
                         2 * pairs, n);
            finish_pixel(o + 2 * dstride, _mm256_castsi256_si128(hib),
                         _mm256_castsi256_si128(lob), pr + 2 * sstride, k,
                         2 * pairs, n);
            finish_pixel(o + 3 * dstride, _mm256_extracti128_si256(hib, 1),
                         _mm256_extracti128_si256(lob, 1), pr + 3 * sstride,
                         k, 2 * pairs, n);
        }
    }
    if (y < rows)
        hpass_pairs(dst + (size_t)y * dstride, dstride,
                    src + (size_t)y * sstride, sstride, col0, sw_px,
                    rows - y, c, pw, x0, nx);
}
#endif

int img_resize_plain = 0;

/* The SIMD path when the CPU has it and its weight table could be made;
 * else (out of memory included: it needs none) the plain loops. */
static void pass_horizontal(uint8_t *dst, size_t dstride, const uint8_t *src,
                            size_t sstride, int col0, int sw_px, int rows,
                            const coeffs *c, int x0, int nx)
{
#if IMG_X86
    pair_weights pw;
    /* SSSE3 is past the baseline: VIT_ISA=generic runs the plain loops
     * (which give the same bytes), unless the CPU has nothing better. */
    const cpu_info *cpu = cpu_get();
    if (!img_resize_plain && cpu->ssse3 &&
        (cpu->isa > CPU_ISA_GENERIC || cpu->best == CPU_ISA_GENERIC) &&
        pair_weights_build(&pw, c, x0, nx)) {
        if (cpu_avx2())
            hpass_avx2(dst, dstride, src, sstride, col0, sw_px, rows, c, &pw,
                       x0, nx);
        else
            hpass_ssse3(dst, dstride, src, sstride, col0, sw_px, rows, c,
                        &pw, x0, nx);
        free(pw.kw);
        return;
    }
#endif
    (void)sw_px;
    hpass_plain(dst, dstride, src, sstride, col0, rows, c, x0, nx);
}

/* Vertical pass: output rows [y0, y0 + ny) into dst (rows `dstride` bytes
 * apart) from src, whose first row is source row `row0` (rows `sstride`
 * bytes apart), over `n` bytes of each row. The sums run along a whole
 * output row at a time so that the inner loops walk memory contiguously,
 * and the vectorizer turns them into widening multiply-adds (built for
 * AVX2 as well as the baseline, picked at load time). */
#if IMG_X86 && defined(__has_attribute)
#if __has_attribute(target_clones)
__attribute__((target_clones("avx2", "default")))
#endif
#endif
static void vpass_rows(uint8_t *dst, size_t dstride, const uint8_t *src,
                       size_t sstride, int row0, size_t n, const coeffs *c,
                       int y0, int ny, int32_t *restrict acc)
{
    for (int y = y0; y < y0 + ny; y++) {
        const int32_t *k = CF_K(c, y);
        const uint8_t *in = src + (size_t)(CF_FIRST(c, y) - row0) * sstride;
        for (size_t i = 0; i < n; i++)
            acc[i] = 1 << (PRECISION_BITS - 1);
        for (int j = 0; j < CF_LEN(c, y); j++, in += sstride) {
            int32_t kj = k[j];
            const uint8_t *restrict q = in;
            for (size_t i = 0; i < n; i++)
                acc[i] += q[i] * kj;
        }
        uint8_t *restrict o = dst + (size_t)(y - y0) * dstride;
        for (size_t i = 0; i < n; i++) {
            int32_t v = acc[i] < 0 ? 0 : acc[i] >> PRECISION_BITS;
            o[i] = (uint8_t)(v > 255 ? 255 : v);
        }
    }
}

static int pass_vertical(uint8_t *dst, size_t dstride, const uint8_t *src,
                         size_t sstride, int row0, size_t n, const coeffs *c,
                         int y0, int ny)
{
    int32_t *acc = malloc(n * sizeof *acc);
    if (!acc)
        return 0;
    vpass_rows(dst, dstride, src, sstride, row0, n, c, y0, ny, acc);
    free(acc);
    return 1;
}

/* Pillow's NEAREST goes through its affine transform, which for a pure
 * scale steps a double by in/out from half a step, adding rather than
 * multiplying; the accumulated rounding decides ties, so we step the same
 * way, from the first row and column even when only a window is wanted.
 * A position that lands outside the source stays 0, as Pillow fills. */
static int resize_nearest(uint8_t *dst, int dw, int dh, const uint8_t *src,
                          int sw, int sh, int wx, int wy, int ww, int wh)
{
    int *xs = malloc((size_t)dw * sizeof *xs);
    if (!xs)
        return 0;
    double ax = (double)sw / dw, ay = (double)sh / dh;
    double xo = ax * 0.5, yo = ay * 0.5;
    for (int x = 0; x < dw; x++, xo += ax)
        xs[x] = (int)xo < sw ? (int)xo : -1;
    memset(dst, 0, (size_t)ww * (size_t)wh * 3);
    for (int y = 0; y < wy + wh; y++, yo += ay) {
        int yi = (int)yo;
        if (y < wy || yi >= sh)
            continue;
        const uint8_t *in = src + (size_t)yi * (size_t)sw * 3;
        uint8_t *o = dst + (size_t)(y - wy) * (size_t)ww * 3;
        for (int x = 0; x < ww; x++)
            if (xs[wx + x] >= 0)
                memcpy(o + 3 * x, in + 3 * (size_t)xs[wx + x], 3);
    }
    free(xs);
    return 1;
}

/* The source range [*lo, *hi) that outputs [o0, o0 + n) of a pass read. */
static void span_of(const coeffs *c, int o0, int n, int *lo, int *hi)
{
    *lo = CF_FIRST(c, o0);
    *hi = 0;
    for (int i = o0; i < o0 + n; i++) {
        if (CF_FIRST(c, i) < *lo)
            *lo = CF_FIRST(c, i);
        if (CF_FIRST(c, i) + CF_LEN(c, i) > *hi)
            *hi = CF_FIRST(c, i) + CF_LEN(c, i);
    }
    if (*hi < *lo)
        *hi = *lo;
}

/* The passes for a filter other than NEAREST, producing only the window;
 * every output value is computed exactly as for the whole image, because
 * each depends only on its own weights and the source span they cover.
 * Returns 0 when out of memory. */
static int resize_conv(uint8_t *dst, const uint8_t *src, int sw, int sh,
                       int out_w, int out_h, const filter *fp, int wx,
                       int wy, int ww, int wh)
{
    coeffs cv = {0}, ch = {0};
    uint8_t *tmp = NULL;
    int ok = 0;
    size_t sstride = (size_t)sw * 3, dstride = (size_t)ww * 3;
    if (out_h != sh && !coeffs_build(&cv, sh, out_h, fp, wy, wh))
        goto out;
    if (out_w != sw && !coeffs_build(&ch, sw, out_w, fp, wx, ww))
        goto out;
    if (out_w != sw && out_h != sh && sh - out_h > 0 &&
        sh - out_h > 2 * (sw - out_w)) {
        /* Pillow 13 runs the vertical pass first when it removes more
         * than twice as many rows as the horizontal pass removes columns
         * (found by reading its binary and confirmed on 1,467 random
         * shapes where the two orders differ; Pillow up to 12 always went
         * horizontal first). The order matters because the intermediate
         * image is rounded to 8 bits. Only the source columns the window
         * reads go through the vertical pass. */
        int c0, c1;
        span_of(&ch, wx, ww, &c0, &c1);
        size_t tstride = (size_t)(c1 - c0) * 3;
        tmp = malloc(tstride * (size_t)wh + 1);
        if (!tmp)
            goto out;
        if (!pass_vertical(tmp, tstride, src + (size_t)c0 * 3, sstride, 0,
                           tstride, &cv, wy, wh))
            goto out;
        pass_horizontal(dst, dstride, tmp, tstride, c0, c1 - c0, wh, &ch, wx,
                        ww);
    } else {
        /* Horizontal first (or only one pass): only the source rows the
         * window's output rows read go through the horizontal pass. */
        int r0 = wy, r1 = wy + wh;
        if (out_h != sh)
            span_of(&cv, wy, wh, &r0, &r1);
        const uint8_t *mid = src + (size_t)r0 * sstride + (size_t)wx * 3;
        size_t mstride = sstride;
        if (out_w != sw) {
            tmp = malloc(dstride * (size_t)(r1 - r0) + 1);
            if (!tmp)
                goto out;
            pass_horizontal(tmp, dstride, src + (size_t)r0 * sstride, sstride,
                            0, sw, r1 - r0, &ch, wx, ww);
            mid = tmp;
            mstride = dstride;
        }
        if (out_h != sh) {
            if (!pass_vertical(dst, dstride, mid, mstride, r0, dstride, &cv,
                               wy, wh))
                goto out;
        } else {
            for (int y = 0; y < wh; y++)
                memcpy(dst + (size_t)y * dstride, mid + (size_t)y * mstride,
                       dstride);
        }
    }
    ok = 1;
out:
    coeffs_free(&cv);
    coeffs_free(&ch);
    free(tmp);
    return ok;
}

img_status img_window_check(const img_rgb *src, int out_w, int out_h, int wx,
                            int wy, int ww, int wh, const uint8_t *dst,
                            const char *who, char *err, size_t errlen)
{
    if (!src || !dst || !src->rgb || src->width <= 0 || src->height <= 0)
        return img_fail(err, errlen, IMG_E_ARG,
                        "%s needs a non-empty source image and an output",
                        who);
    if (out_w <= 0 || out_h <= 0)
        return img_fail(err, errlen, IMG_E_ARG,
                        "cannot resize to %dx%d; both sides must be at "
                        "least 1",
                        out_w, out_h);
    if (wx < 0 || wy < 0 || ww <= 0 || wh <= 0 || wx > out_w - ww ||
        wy > out_h - wh)
        return img_fail(err, errlen, IMG_E_ARG,
                        "window %dx%d at (%d, %d) is not inside %dx%d", ww,
                        wh, wx, wy, out_w, out_h);
    return IMG_OK;
}

img_status img_resize_window(const img_rgb *src, int out_w, int out_h,
                             img_filter f, int wx, int wy, int ww, int wh,
                             uint8_t *dst, char *err, size_t errlen)
{
    img_status st = img_window_check(src, out_w, out_h, wx, wy, ww, wh, dst,
                                     "img_resize", err, errlen);
    if (st != IMG_OK)
        return st;
    const filter *fp = filter_for(f);
    if (!fp && f != IMG_NEAREST)
        return img_fail(err, errlen, IMG_E_ARG,
                        "unknown resampling filter %d", (int)f);
    int sw = src->width, sh = src->height;
    int ok = 1;
    if (sw == out_w && sh == out_h) {
        /* Pillow returns a copy when the size does not change. */
        for (int y = 0; y < wh; y++)
            memcpy(dst + (size_t)y * (size_t)ww * 3,
                   src->rgb + ((size_t)(wy + y) * (size_t)sw + (size_t)wx) * 3,
                   (size_t)ww * 3);
    } else if (!fp) {
        ok = resize_nearest(dst, out_w, out_h, src->rgb, sw, sh, wx, wy, ww,
                            wh);
    } else {
        ok = resize_conv(dst, src->rgb, sw, sh, out_w, out_h, fp, wx, wy, ww,
                         wh);
    }
    if (!ok)
        return img_fail(err, errlen, IMG_E_NOMEM,
                        "out of memory resizing %dx%d to %dx%d", sw, sh,
                        out_w, out_h);
    return IMG_OK;
}

img_status img_resize(const img_rgb *src, int out_w, int out_h, img_filter f,
                      img_rgb *dst, char *err, size_t errlen)
{
    if (!dst)
        return img_fail(err, errlen, IMG_E_ARG,
                        "img_resize needs a non-empty source image and an "
                        "output");
    if (out_w > 0 && out_h > 0 &&
        (uint64_t)out_w * (uint64_t)out_h > SIZE_MAX / 3 / 4)
        return img_fail(err, errlen, IMG_E_ARG, "cannot resize to %dx%d",
                        out_w, out_h);
    uint8_t *pix = NULL;
    if (out_w > 0 && out_h > 0) {
        pix = malloc((size_t)out_w * (size_t)out_h * 3);
        if (!pix)
            return img_fail(err, errlen, IMG_E_NOMEM,
                            "out of memory resizing to %dx%d", out_w, out_h);
    }
    img_status st = img_resize_window(src, out_w, out_h, f, 0, 0, out_w,
                                      out_h, pix, err, errlen);
    if (st != IMG_OK) {
        free(pix);
        return st;
    }
    dst->width = out_w;
    dst->height = out_h;
    dst->rgb = pix;
    return IMG_OK;
}
