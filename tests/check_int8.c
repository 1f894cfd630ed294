/*
 * The int8 mode (VIT_PRECISION_INT8). The kernel is checked against the
 * quantization written out here from its definition (per-channel symmetric
 * weights, per-row asymmetric activations, exact integer sums) in double
 * precision, on shapes with every kind of tail; every path this machine
 * can run (AVX-512 VNNI, AVX-VNNI, AVX2, portable C) must give the same
 * bits, and the quantized activations the bytes of the definition. The
 * whole models are checked against the transformers fixtures: int8
 * changes numbers, so the contract is a cosine similarity of at least
 * 0.999 per output vector, not 1e-4.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/cpu.h"
#include "testutil.h"
#include "vit/vit_impl.h"

static float frand(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return (float)((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

/* A row quantized as defined: its range with 0 in it (NaN ignored),
 * s = range / 255 (1 when that is 0), z = min(round(-lo / s), 255), u =
 * clamp(round(x / s) + z, 0, 255), rounding half to even. */
static void quantize_ref(uint8_t *u, float *scale, int32_t *zero,
                         const float *x, int K)
{
    float lo = 0, hi = 0;
    for (int k = 0; k < K; k++) {
        lo = fminf(lo, x[k]);
        hi = fmaxf(hi, x[k]);
    }
    float s = (hi - lo) / 255.0f;
    if (!(s > 0))
        s = 1;
    /* at most 255 (1 / s can be infinite, -lo / s NaN) */
    float z = fminf(nearbyintf(-lo * (1.0f / s)), 255);
    for (int k = 0; k < K; k++) {
        float v = nearbyintf(x[k] * (1.0f / s)) + z;
        u[k] = (uint8_t)fminf(fmaxf(v, 0), 255); /* NaN: 0 */
    }
    *scale = s;
    *zero = (int32_t)z;
}

/* The reference: quantize as defined, sum exactly, scale in double. */
static void reference(double *out, const float *x, const float *const *w,
                      const float *const *b, int nparts, int Np, int M, int K)
{
    int N = Np * nparts;
    uint8_t *u = malloc((size_t)K);
    for (int i = 0; i < M; i++) {
        float s;
        int32_t z;
        quantize_ref(u, &s, &z, x + (size_t)i * K, K);
        for (int n = 0; n < N; n++) {
            const float *wn = w[n / Np] + (size_t)(n % Np) * K;
            float amax = 0;
            for (int k = 0; k < K; k++)
                amax = fmaxf(amax, fabsf(wn[k]));
            float sw = amax > 0 ? amax / 127.0f : 1.0f;
            long long acc = 0;
            for (int k = 0; k < K; k++) {
                float q = nearbyintf(wn[k] * (1.0f / sw));
                q = fminf(fmaxf(q, -127), 127);
                acc += (long long)(u[k] - z) * (long long)q;
            }
            const float *bp = b ? b[n / Np] : NULL;
            out[(size_t)i * N + n] =
                (double)s * sw * (double)acc + (bp ? bp[n % Np] : 0.0);
        }
    }
    free(u);
}

static const char *path_names[VIT_QPATH_COUNT] = {
    "portable C", "AVX2", "AVX-VNNI", "AVX-512 VNNI"};

static const struct {
    int M, Np, K, nparts, bias, accumulate;
} shapes[] = {
    {1, 48, 4, 1, 1, 0},    /* one tile, one group */
    {13, 50, 37, 1, 1, 0},  /* tails in every dimension */
    {9, 32, 33, 3, 1, 0},   /* fused q, k, v: segments inside tiles */
    {8, 16, 64, 3, 0, 0},   /* fused, no bias */
    {40, 100, 200, 1, 1, 1}, /* accumulate, as the residual adds */
    {200, 96, 3000, 1, 0, 0}, /* several row chunks, K in 11.7 slices
                                 of the AVX2 kernel's widened rows */
    {16, 48, 512, 1, 1, 0},  /* whole slices, whole tiles */
    {7, 60, 513, 1, 1, 1},   /* slices and one group; short rows */
    {1, 1, 1, 1, 1, 0},      /* one of everything */
    {3, 20, 15, 3, 1, 0},    /* segments shorter than a column quad */
    {10, 250, 70, 1, 1, 0},  /* 6 panels: 4 at a time (AVX2), then 2 */
    {5, 100, 40, 3, 1, 1},   /* 7 panels, segments across their groups */
};

START_TEST(qlinear_matches_definition)
{
    int M = shapes[_i].M, Np = shapes[_i].Np, K = shapes[_i].K;
    int P = shapes[_i].nparts, N = Np * P, acc = shapes[_i].accumulate;
    unsigned seed = 7 + (unsigned)_i;
    float *x = malloc((size_t)M * K * sizeof *x);
    float *wp[3], *bp[3];
    for (size_t i = 0; i < (size_t)M * K; i++)
        x[i] = frand(&seed) * (i % 5 == 0 ? 3.0f : 1.0f) + 0.3f;
    for (int p = 0; p < P; p++) {
        wp[p] = malloc((size_t)Np * K * sizeof *wp[p]);
        bp[p] = malloc((size_t)Np * sizeof *bp[p]);
        for (size_t i = 0; i < (size_t)Np * K; i++)
            wp[p][i] = frand(&seed) * 0.2f;
        for (int n = 0; n < Np; n++)
            bp[p][n] = frand(&seed);
    }
    /* An all-zero weight row has no scale of its own. */
    if (Np > 1)
        memset(wp[0] + K, 0, (size_t)K * sizeof *wp[0]);
    vit__qweight q;
    vit_error err;
    const float *const *bias = shapes[_i].bias ? (const float *const *)bp
                                               : NULL;
    ck_assert_int_eq(vit__qweight_pack(&q, (const float *const *)wp, bias, P,
                                       Np, K, &err),
                     VIT_OK);
    size_t lda = vit__qact_stride(K);
    uint8_t *a = aligned_alloc(64, (size_t)M * lda);
    float *as = malloc((size_t)M * sizeof *as);
    int32_t *az = malloc((size_t)M * sizeof *az);
    vit__quantize_rows(a, as, az, x, M, K, NULL, NULL);

    double *want = malloc((size_t)M * N * sizeof *want);
    reference(want, x, (const float *const *)wp, bias, P, Np, M, K);
    /* The outputs: P matrices of (M, Np), row stride Np, one per path. */
    float *got[VIT_QPATH_COUNT] = {NULL};
    for (int path = 0; path < VIT_QPATH_COUNT; path++) {
        if (!vit__qkernel_force_isa(path))
            continue;
        got[path] = malloc((size_t)M * N * sizeof(float));
        for (size_t i = 0; i < (size_t)M * N; i++)
            got[path][i] = acc ? 0.5f : NAN;
        vit__qout o = {{NULL}, Np, Np, acc, 0, NULL, NULL};
        for (int p = 0; p < P; p++)
            o.out[p] = got[path] + (size_t)p * M * Np;
        vit__qlinear(&o, a, as, az, &q, M);
    }
    vit__qkernel_force_isa(-1);
    double worst = 0, scale = 0;
    const float *g0 = got[VIT_QPATH_PORTABLE];
    for (int i = 0; i < M; i++)
        for (int n = 0; n < N; n++) {
            double w = want[(size_t)i * N + n] + (acc ? 0.5 : 0);
            double g = g0[(size_t)(n / Np) * M * Np + (size_t)i * Np + n % Np];
            ck_assert_msg(isfinite(g), "row %d column %d not written", i, n);
            worst = fmax(worst, fabs(g - w));
            scale = fmax(scale, fabs(w));
        }
    printf("int8 linear %dx%dx%d (%d parts): max difference %.3g of %.3g; "
           "the same bits on:", M, N, K, P, worst, scale);
    ck_assert(worst <= 2e-6 * scale);
    for (int path = 0; path < VIT_QPATH_COUNT; path++) {
        if (!got[path])
            continue;
        printf(" %s;", path_names[path]);
        ck_assert_msg(memcmp(got[path], g0, (size_t)M * N * sizeof(float)) ==
                          0,
                      "the %s and portable kernels differ", path_names[path]);
    }
    printf("\n");
    for (int path = 0; path < VIT_QPATH_COUNT; path++)
        free(got[path]);
    vit__qweight_free(&q);
    for (int p = 0; p < P; p++)
        free(wp[p]), free(bp[p]);
    free(x), free(a), free(as), free(az), free(want);
}
END_TEST

/* Row lengths with every tail of the vector paths (8, 16 and 32 floats
 * at a time) and whole vectors. */
static const int qrow_lengths[] = {1, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64,
                                   70, 100, 768};

/* Every path quantizes rows to the bytes, scales and zero points of the
 * definition, whether it finds the rows' ranges or is given them; every
 * value comes back within half a step, zero exactly. */
START_TEST(quantize_rows_as_defined)
{
    enum { M = 9 };
    int K = qrow_lengths[_i];
    float *x = malloc((size_t)M * K * sizeof *x);
    unsigned seed = 3 + (unsigned)_i;
    for (int i = 0; i < M * K; i++)
        x[i] = frand(&seed) * (float)(i / K + 1);
    for (int k = 0; k < K; k++) {
        x[K + k] = fabsf(x[K + k]); /* a row of one sign */
        x[2 * K + k] = 0;           /* one of zeros */
        /* one whose scale is 1 (its range 255), of ties that round to
         * even, z (127.5) too */
        x[5 * K + k] = k == 0 ? 127.5f : k == 1 ? -127.5f : (float)(k % 7) - 2.5f;
        x[6 * K + k] = 1e-40f * frand(&seed); /* denormals: 1 / s is inf */
    }
    x[3 * K + K / 2] = 0;
    x[4 * K + K / 3] = NAN;        /* bad pixels: a number comes out, */
    x[7 * K + K - 1] = INFINITY;   /* the same on every path */
    x[8 * K + K / 2] = -INFINITY;
    size_t lda = vit__qact_stride(K);
    ck_assert_uint_eq(lda % 64, 0);
    uint8_t *want = calloc(M, lda), *a = aligned_alloc(64, M * lda);
    float s0[M], s[M], lo[M], hi[M];
    int32_t z0[M], z[M];
    for (int i = 0; i < M; i++) {
        quantize_ref(want + i * lda, &s0[i], &z0[i], x + (size_t)i * K, K);
        lo[i] = hi[i] = 0;
        for (int k = 0; k < K; k++) {
            lo[i] = fminf(lo[i], x[(size_t)i * K + k]);
            hi[i] = fmaxf(hi[i], x[(size_t)i * K + k]);
        }
    }
    for (int path = 0; path < VIT_QPATH_COUNT; path++) {
        if (!vit__qkernel_force_isa(path))
            continue;
        for (int given = 0; given < 2; given++) {
            memset(a, 0xa5, M * lda);
            vit__quantize_rows(a, s, z, x, M, K, given ? lo : NULL,
                               given ? hi : NULL);
            for (int i = 0; i < M; i++) {
                ck_assert_msg(memcmp(&s[i], &s0[i], sizeof *s) == 0 &&
                                  z[i] == z0[i],
                              "%s, K %d, row %d: scale %a zero %d, not %a %d",
                              path_names[path], K, i, s[i], z[i], s0[i],
                              z0[i]);
                for (size_t k = 0; k < lda; k++)
                    ck_assert_msg(a[i * lda + k] == want[i * lda + k],
                                  "%s, K %d, row %d, %zu: %d, not %d",
                                  path_names[path], K, i, k, a[i * lda + k],
                                  want[i * lda + k]);
            }
        }
    }
    vit__qkernel_force_isa(-1);
    for (int i = 0; i < 6; i++) { /* the rows of finite numbers */
        ck_assert(s0[i] > 0);
        ck_assert(z0[i] >= 0 && z0[i] <= 255);
        for (int k = 0; k < K; k++) {
            float xv = x[i * K + k];
            if (isnan(xv))
                continue;
            float back = s0[i] * (float)(want[i * lda + k] - z0[i]);
            ck_assert_msg(fabsf(back - xv) <= s0[i] * 0.5001f,
                          "row %d, %d: %g back as %g", i, k, xv, back);
            if (xv == 0)
                ck_assert_float_eq(back, 0);
        }
    }
    free(x), free(want), free(a);
}
END_TEST

/* The MLP's first product applies the activation to each tile as it is
 * stored and keeps every row's range, which quantizing the result then
 * uses instead of finding it: both as if done in separate passes, on each
 * path. */
START_TEST(epilogue_activation_and_ranges)
{
    enum { M = 11, N = 100, K = 40 };
    if (!vit__qkernel_force_isa(_i))
        return; /* a path this CPU does not run */
    unsigned seed = 5;
    float x[M * K], w[N * K], plain[M * N], fused[M * N], lo[M], hi[M];
    for (int i = 0; i < M * K; i++)
        x[i] = frand(&seed);
    for (int i = 0; i < N * K; i++)
        w[i] = frand(&seed);
    const float *wp[] = {w};
    vit__qweight q;
    vit_error err;
    ck_assert_int_eq(vit__qweight_pack(&q, wp, NULL, 1, N, K, &err), VIT_OK);
    size_t lda = vit__qact_stride(K), ldf = vit__qact_stride(N);
    uint8_t *a = aligned_alloc(64, M * lda);
    uint8_t *q1 = aligned_alloc(64, M * ldf), *q2 = aligned_alloc(64, M * ldf);
    float as[M], s1[M], s2[M];
    int32_t az[M], z1[M], z2[M];
    vit__quantize_rows(a, as, az, x, M, K, NULL, NULL);
    vit__qout o = {{plain}, N, N, 0, 0, NULL, NULL};
    vit__qlinear(&o, a, as, az, &q, M);
    vit__activation(plain, M * N, VIT_ACT_GELU);
    for (int i = 0; i < M; i++)
        lo[i] = hi[i] = 0;
    vit__qout f = {{fused}, N, N, 0, 1 + VIT_ACT_GELU, lo, hi};
    vit__qlinear(&f, a, as, az, &q, M);
    ck_assert(memcmp(plain, fused, sizeof plain) == 0);
    for (int i = 0; i < M; i++) {
        float mn = 0, mx = 0;
        for (int n = 0; n < N; n++) {
            mn = fminf(mn, plain[i * N + n]);
            mx = fmaxf(mx, plain[i * N + n]);
        }
        ck_assert_float_eq(lo[i], mn);
        ck_assert_float_eq(hi[i], mx);
    }
    vit__quantize_rows(q1, s1, z1, plain, M, N, NULL, NULL);
    vit__quantize_rows(q2, s2, z2, plain, M, N, lo, hi);
    ck_assert(memcmp(q1, q2, M * ldf) == 0);
    ck_assert(memcmp(s1, s2, sizeof s1) == 0 && memcmp(z1, z2, sizeof z1) == 0);
    vit__qkernel_force_isa(-1);
    vit__qweight_free(&q);
    free(a), free(q1), free(q2);
}
END_TEST

/* The kernel is the CPU table's (VIT_ISA caps it); the tests' hook runs
 * any path the table allows, and no other. */
START_TEST(kernel_follows_the_cpu)
{
    /* With AMX-INT8 (and VIT_ISA allowing amx), oneDNN sums; vit's own
     * kernels are checked here apart from it. */
    ck_assert_str_eq(vit_int8_kernel(), cpu_amx_int8() ? "oneDNN AMX-INT8"
                                        : cpu_avx512vnni() ? "AVX-512 VNNI"
                                        : cpu_avxvnni()    ? "AVX-VNNI"
                                        : cpu_avx2()       ? "AVX2"
                                                           : "portable C");
    vit__int8_force_onednn(0);
    const char *best = cpu_avx512vnni() ? "AVX-512 VNNI"
                       : cpu_avxvnni()  ? "AVX-VNNI"
                       : cpu_avx2()     ? "AVX2"
                                        : "portable C";
    ck_assert_str_eq(vit_int8_kernel(), best);
    int runs[VIT_QPATH_COUNT] = {1, cpu_avx2(), cpu_avxvnni(),
                                 cpu_avx512vnni()};
    for (int p = 0; p < VIT_QPATH_COUNT; p++) {
        ck_assert_int_eq(vit__qkernel_force_isa(p), runs[p]);
        ck_assert_str_eq(vit_int8_kernel(), runs[p] ? path_names[p] : best);
        vit__qkernel_force_isa(-1);
    }
    ck_assert_str_eq(vit_int8_kernel(), best);
    vit__int8_force_onednn(-1);
    printf("int8 kernel: %s (cpu path %s)\n", vit_int8_kernel(),
           cpu_isa_name(cpu_get()->isa));
}
END_TEST

/* ---- whole models against transformers ---- */

static vit_model *load_int8(const char *name, vit_state **s)
{
    vit_options opt = vit_options_default();
    opt.precision = VIT_PRECISION_INT8;
    opt.max_batch = 2;
    return tu_load_fixture(name, &opt, s);
}

#define MIN_COSINE 0.999

static const char *vits[] = {"vit_tiny",      "vit_nobias_f16", "vit_bf16",
                             "vit_sharded",   "vit_model",      "vit_rect",
                             "deit_teacher",  "dinov2_reg_cls", "dinov2_swiglu",
                             "timm/timm_qknorm", "timm/timm_map"};

START_TEST(vit_int8_near_reference)
{
    const char *name = vits[_i];
    vit_state *s;
    vit_model *m = load_int8(name, &s);
    vit_model_info in;
    vit_model_get_info(m, &in);
    vit_array px = tu_fixture(name, "ref_pixels.npy");
    int n = (int)px.shape[0];
    vit_array want = tu_fixture(name, in.num_labels ? "ref_logits.npy"
                                             : "ref_embed.npy");
    int dim = (int)want.shape[1];
    float *out = malloc((size_t)n * dim * sizeof *out);
    vit_error err;
    if (in.num_labels) {
        ck_assert_int_eq(vit_classify_pixels(s, px.data, n, 0, NULL, out,
                                             &err),
                         VIT_OK);
    } else {
        ck_assert_int_eq(vit_embed_pixels(s, px.data, n, out, &err), VIT_OK);
    }
    double c = tu_min_cosine(out, want.data, n, dim);
    printf("%s int8: %s cosine to the reference's fp32 >= %.6f\n", name,
           in.num_labels ? "logits" : "embedding", c);
    ck_assert(c >= MIN_COSINE);
    free(out);
    vit_array_free(&px);
    vit_array_free(&want);
    vit_state_free(s);
    vit_model_free(m);
}
END_TEST

static const char *clips[] = {"clip_tiny", "clip_gelu_f16", "siglip_tiny"};

START_TEST(clip_int8_near_reference)
{
    const char *name = clips[_i];
    vit_state *s;
    vit_model *m = load_int8(name, &s);
    double ci, ct;
    tu_pair_cosines(s, name, &ci, &ct);
    printf("%s int8: cosine to transformers' fp32: images >= %.6f, texts >= "
           "%.6f\n", name, ci, ct);
    ck_assert(ci >= MIN_COSINE);
    ck_assert(ct >= MIN_COSINE);
    vit_state_free(s);
    vit_model_free(m);
}
END_TEST

/* The state's memory report counts the int8 weights, and only in int8. */
START_TEST(memory_counts_int8_weights)
{
    vit_state *s;
    vit_model *m = load_int8("vit_tiny", &s);
    vit_memory q, f;
    vit_state_memory(s, &q);
    vit_state_free(s);
    vit_model_free(m);
    vit_options opt = vit_options_default();
    vit_error err;
    ck_assert_int_eq(vit_model_load(FIXTURES "/vit_tiny", &opt, &m, &err),
                     VIT_OK);
    ck_assert_int_eq(vit_state_new(m, &s, &err), VIT_OK);
    vit_state_memory(s, &f);
    vit_state_free(s);
    vit_model_free(m);
    ck_assert_uint_eq(f.weights_int8, 0);
    ck_assert_uint_eq(f.weights_dropped, 0);
    /* vit_tiny: 2 layers of D 32, F 64, with biases. Per layer: q, k, v
     * (96 rows, padded to 96), the output (32 -> 48), the MLP (64 -> 96,
     * 32 -> 48) with 12 bytes per padded row of scale, colsum and bias. */
    size_t want = 2 * ((96 * 32 + 96 * 12) + (48 * 32 + 48 * 12) +
                       (96 * 32 + 96 * 12) + (48 * 64 + 48 * 12));
    ck_assert_uint_eq(q.weights_int8, want);
    ck_assert(q.weights_mapped == f.weights_mapped);
}
END_TEST

/* The int8 products' sums through oneDNN (what CPUs with AMX-INT8 run)
 * give the bits of vit's own kernels: the sums are exact integers either
 * way, scaled back by the one epilogue. Forced here where the CPU has
 * AVX-512 VNNI, whose oneDNN kernel is exact too. Images of a ViT, DINOv2
 * with SwiGLU, and both towers of a CLIP and a SigLIP, at 1 and 3
 * threads. */
static const char *onednn_models[] = {"vit_tiny", "dinov2_swiglu",
                                      "clip_tiny", "siglip_tiny"};

/* The model's outputs on its fixture's pixels (logits or embeddings),
 * then its text embeddings where it has a text tower; returns the floats
 * written to out. */
static size_t int8_outputs(const char *name, int way, int threads,
                           float *out)
{
    vit__int8_force_onednn(way);
    vit_options opt = vit_options_default();
    opt.precision = VIT_PRECISION_INT8;
    opt.max_batch = 2;
    opt.threads = threads;
    vit_state *s;
    vit_model *m = tu_load_fixture(name, &opt, &s);
    vit__int8_force_onednn(-1);
    vit_model_info in;
    vit_model_get_info(m, &in);
    vit_memory mem;
    vit_state_memory(s, &mem);
    ck_assert(mem.weights_int8 > 0);
    vit_error err;
    vit_array px = tu_fixture(name, "ref_pixels.npy");
    int n = (int)px.shape[0];
    int dim = in.num_labels ? in.num_labels : in.embed_dim;
    if (in.num_labels)
        ck_assert_int_eq(vit_classify_pixels(s, px.data, n, 0, NULL, out,
                                             &err),
                         VIT_OK);
    else
        ck_assert_msg(vit_embed_pixels(s, px.data, n, out, &err) == VIT_OK,
                      "%s", err.msg);
    size_t k = (size_t)n * dim;
    vit_array_free(&px);
    if (in.has_text) {
        vit_array ida = tu_fixture(name, "ref_ids.npy");
        int nt = (int)ida.shape[0], T = (int)ida.shape[1];
        int32_t *ids = malloc((size_t)nt * T * sizeof *ids);
        for (int i = 0; i < nt * T; i++)
            ids[i] = (int32_t)ida.data[i];
        int *lens = tu_fixture_lens(name);
        ck_assert_int_eq(vit__embed_ids(s, ids, lens, nt, T, out + k, &err),
                         VIT_OK);
        k += (size_t)nt * in.embed_dim;
        free(ids);
        free(lens);
        vit_array_free(&ida);
    }
    vit_state_free(s);
    vit_model_free(m);
    return k;
}

START_TEST(int8_onednn_same_bits)
{
    if (!cpu_avx512vnni()) {
        printf("int8 sums on oneDNN: not checked on this CPU (under "
               "VIT_ISA): it needs AVX-512 VNNI or AMX-INT8\n");
        return;
    }
    const char *name = onednn_models[_i];
    enum { MAX = 1 << 16 };
    float *own = malloc(MAX * sizeof *own), *dnn = malloc(MAX * sizeof *dnn);
    for (int threads = 1; threads <= 3; threads += 2) {
        size_t n = int8_outputs(name, 0, threads, own);
        ck_assert_uint_eq(int8_outputs(name, 1, threads, dnn), n);
        ck_assert_msg(memcmp(own, dnn, n * sizeof *own) == 0,
                      "%s, %d threads: oneDNN's int8 sums give other bits",
                      name, threads);
    }
    free(own);
    free(dnn);
}
END_TEST

START_TEST(unknown_precision_refused)
{
    vit_options opt = vit_options_default();
    opt.precision = (vit_precision)7;
    vit_model *m = NULL;
    vit_error err;
    ck_assert_int_eq(vit_model_load(FIXTURES "/vit_tiny", &opt, &m, &err),
                     VIT_E_ARG);
    ck_assert_ptr_null(m);
    ck_assert_ptr_nonnull(strstr(err.msg, "precision"));
}
END_TEST

Suite *int8_suite(void)
{
    Suite *s = suite_create("int8");
    TCase *tc = tcase_create("kernel");
    tcase_add_loop_test(tc, qlinear_matches_definition, 0,
                        (int)(sizeof shapes / sizeof *shapes));
    tcase_add_loop_test(tc, quantize_rows_as_defined, 0,
                        (int)(sizeof qrow_lengths / sizeof *qrow_lengths));
    tcase_add_loop_test(tc, epilogue_activation_and_ranges, 0,
                        VIT_QPATH_COUNT);
    tcase_add_test(tc, kernel_follows_the_cpu);
    suite_add_tcase(s, tc);
    tc = tcase_create("models");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, vit_int8_near_reference, 0,
                        (int)(sizeof vits / sizeof *vits));
    tcase_add_loop_test(tc, clip_int8_near_reference, 0,
                        (int)(sizeof clips / sizeof *clips));
    tcase_add_test(tc, unknown_precision_refused);
    tcase_add_test(tc, memory_counts_int8_weights);
    tcase_add_loop_test(tc, int8_onednn_same_bits, 0,
                        (int)(sizeof onednn_models / sizeof *onednn_models));
    suite_add_tcase(s, tc);
    return s;
}
