/*
 * The int8 mode (VIT_PRECISION_INT8). The kernel is checked against the
 * quantization written out here from its definition (per-channel symmetric
 * weights, per-row asymmetric activations, exact integer sums) in double
 * precision, on shapes with every kind of tail; the VNNI and portable
 * kernels must give the same bits. The whole models are checked against
 * the transformers fixtures: int8 changes numbers, so the contract is a
 * cosine similarity of at least 0.999 per output vector, not 1e-4.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "vit/vit_impl.h"

static float frand(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return (float)((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

/* The reference: quantize as defined, sum exactly, scale in double. */
static void reference(double *out, const float *x, const float *const *w,
                      const float *const *b, int nparts, int Np, int M, int K)
{
    int N = Np * nparts;
    for (int i = 0; i < M; i++) {
        const float *xi = x + (size_t)i * K;
        float lo = 0, hi = 0;
        for (int k = 0; k < K; k++) {
            lo = fminf(lo, xi[k]);
            hi = fmaxf(hi, xi[k]);
        }
        float s = (hi - lo) / 255.0f;
        if (!(s > 0))
            s = 1;
        float z = nearbyintf(-lo * (1.0f / s));
        for (int n = 0; n < N; n++) {
            const float *wn = w[n / Np] + (size_t)(n % Np) * K;
            float amax = 0;
            for (int k = 0; k < K; k++)
                amax = fmaxf(amax, fabsf(wn[k]));
            float sw = amax > 0 ? amax / 127.0f : 1.0f;
            long long acc = 0;
            for (int k = 0; k < K; k++) {
                float u = nearbyintf(xi[k] * (1.0f / s)) + z;
                u = fminf(fmaxf(u, 0), 255);
                float q = nearbyintf(wn[k] * (1.0f / sw));
                q = fminf(fmaxf(q, -127), 127);
                acc += (long long)(u - z) * (long long)q;
            }
            const float *bp = b ? b[n / Np] : NULL;
            out[(size_t)i * N + n] =
                (double)s * sw * (double)acc + (bp ? bp[n % Np] : 0.0);
        }
    }
}

static const struct {
    int M, Np, K, nparts, bias, accumulate;
} shapes[] = {
    {1, 48, 4, 1, 1, 0},    /* one tile, one group */
    {13, 50, 37, 1, 1, 0},  /* tails in every dimension */
    {9, 32, 33, 3, 1, 0},   /* fused q, k, v: segments inside tiles */
    {8, 16, 64, 3, 0, 0},   /* fused, no bias */
    {40, 100, 200, 1, 1, 1}, /* accumulate, as the residual adds */
    {200, 96, 3000, 1, 0, 0}, /* several row chunks */
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
    float *got[2];
    for (int portable = 0; portable < 2; portable++) {
        /* The outputs: P matrices of (M, Np), row stride Np. */
        got[portable] = malloc((size_t)M * N * sizeof(float));
        for (size_t i = 0; i < (size_t)M * N; i++)
            got[portable][i] = acc ? 0.5f : NAN;
        vit__qout o = {{NULL}, Np, Np, acc, 0, NULL, NULL};
        for (int p = 0; p < P; p++)
            o.out[p] = got[portable] + (size_t)p * M * Np;
        vit__qkernel_force_portable(portable);
        vit__qlinear(&o, a, as, az, &q, M);
    }
    vit__qkernel_force_portable(0);
    double worst = 0, scale = 0;
    for (int i = 0; i < M; i++)
        for (int n = 0; n < N; n++) {
            double w = want[(size_t)i * N + n] + (acc ? 0.5 : 0);
            double g = got[0][(size_t)(n / Np) * M * Np + (size_t)i * Np +
                              n % Np];
            ck_assert_msg(isfinite(g), "row %d column %d not written", i, n);
            worst = fmax(worst, fabs(g - w));
            scale = fmax(scale, fabs(w));
        }
    printf("int8 linear %dx%dx%d (%d parts): max difference %.3g of %.3g\n",
           M, N, K, P, worst, scale);
    ck_assert(worst <= 2e-6 * scale);
    ck_assert_msg(memcmp(got[0], got[1], (size_t)M * N * sizeof(float)) == 0,
                  "the VNNI and portable kernels differ");
    vit__qweight_free(&q);
    for (int p = 0; p < P; p++)
        free(wp[p]), free(bp[p]);
    free(x), free(a), free(as), free(az), free(want), free(got[0]),
        free(got[1]);
}
END_TEST

/* Every value comes back within half a step, zero exactly. */
START_TEST(quantize_rows_within_half_step)
{
    enum { M = 5, K = 70 }; /* 70: a partial vector at the end */
    float x[M * K];
    unsigned seed = 3;
    for (int i = 0; i < M * K; i++)
        x[i] = frand(&seed) * (float)(i / K + 1);
    for (int k = 0; k < K; k++)
        x[K + k] = fabsf(x[K + k]); /* a row of one sign */
    memset(x + 2 * K, 0, K * sizeof *x); /* and one of zeros */
    x[3 * K + 9] = 0;
    x[4 * K + 11] = NAN; /* bad pixels: a number comes out, the same on
                            both paths */
    size_t lda = vit__qact_stride(K);
    ck_assert_uint_eq(lda % 64, 0);
    uint8_t *a = aligned_alloc(64, M * lda), *a2 = aligned_alloc(64, M * lda);
    float s[M], s2[M];
    int32_t z[M], z2[M];
    vit__qkernel_force_portable(1);
    vit__quantize_rows(a2, s2, z2, x, M, K, NULL, NULL);
    vit__qkernel_force_portable(0);
    vit__quantize_rows(a, s, z, x, M, K, NULL, NULL);
    /* The vector and portable paths give the same bytes. */
    ck_assert(memcmp(a, a2, M * lda) == 0);
    ck_assert(memcmp(s, s2, sizeof s) == 0 && memcmp(z, z2, sizeof z) == 0);
    free(a2);
    for (int i = 0; i < M; i++) {
        ck_assert(s[i] > 0);
        ck_assert(z[i] >= 0 && z[i] <= 255);
        for (int k = 0; k < K; k++) {
            if (isnan(x[i * K + k]))
                continue;
            float back = s[i] * (float)(a[i * lda + k] - z[i]);
            ck_assert_msg(fabsf(back - x[i * K + k]) <= s[i] * 0.5001f,
                          "row %d, %d: %g back as %g", i, k, x[i * K + k],
                          back);
            if (x[i * K + k] == 0)
                ck_assert_float_eq(back, 0);
        }
        for (size_t k = K; k < lda; k++)
            ck_assert_int_eq(a[i * lda + k], 0);
    }
    free(a);
}
END_TEST

/* The MLP's first product applies the activation to each tile as it is
 * stored and keeps every row's range, which quantizing the result then
 * uses instead of finding it: both as if done in separate passes. */
START_TEST(epilogue_activation_and_ranges)
{
    enum { M = 11, N = 100, K = 40 };
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
    vit__qweight_free(&q);
    free(a), free(q1), free(q2);
}
END_TEST

START_TEST(kernel_follows_the_cpu)
{
    __builtin_cpu_init();
    int vnni = __builtin_cpu_supports("avx512f") &&
               __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vnni");
    ck_assert_str_eq(vit_int8_kernel(), vnni ? "AVX-512 VNNI" : "portable C");
}
END_TEST

/* ---- whole models against transformers ---- */

/* The smallest cosine similarity between matching rows. */
static double min_cosine(const float *got, const float *want, int rows,
                         int dim)
{
    double worst = 1;
    for (int i = 0; i < rows; i++) {
        double gw = 0, gg = 0, ww = 0;
        for (int j = 0; j < dim; j++) {
            double g = got[(size_t)i * dim + j], w = want[(size_t)i * dim + j];
            gw += g * w, gg += g * g, ww += w * w;
        }
        worst = fmin(worst, gw / sqrt(gg * ww));
    }
    return worst;
}

static vit_model *load_int8(const char *name, vit_state **s)
{
    vit_options opt = vit_options_default();
    opt.precision = VIT_PRECISION_INT8;
    opt.max_batch = 2;
    return tu_load_fixture(name, &opt, s);
}

#define MIN_COSINE 0.999

static const char *vits[] = {"vit_tiny", "vit_nobias_f16", "vit_bf16",
                             "vit_sharded", "vit_model", "vit_rect"};

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
    double c = min_cosine(out, want.data, n, dim);
    printf("%s int8: %s cosine to transformers' fp32 >= %.6f\n", name,
           in.num_labels ? "logits" : "embedding", c);
    ck_assert(c >= MIN_COSINE);
    free(out);
    vit_array_free(&px);
    vit_array_free(&want);
    vit_state_free(s);
    vit_model_free(m);
}
END_TEST

static const char *clips[] = {"clip_tiny", "clip_gelu_f16"};

START_TEST(clip_int8_near_reference)
{
    const char *name = clips[_i];
    vit_state *s;
    vit_model *m = load_int8(name, &s);
    vit_array px = tu_fixture(name, "ref_pixels.npy");
    vit_array wi = tu_fixture(name, "ref_image_embeds.npy");
    vit_array ida = tu_fixture(name, "ref_ids.npy");
    vit_array wt = tu_fixture(name, "ref_text_embeds.npy");
    int ni = (int)px.shape[0], nt = (int)ida.shape[0], T = (int)ida.shape[1];
    int E = (int)wi.shape[1];
    float *img = malloc((size_t)ni * E * sizeof *img);
    float *txt = malloc((size_t)nt * E * sizeof *txt);
    int32_t *ids = malloc((size_t)nt * T * sizeof *ids);
    for (int i = 0; i < nt * T; i++)
        ids[i] = (int32_t)ida.data[i];
    vit_error err;
    ck_assert_int_eq(vit_embed_pixels(s, px.data, ni, img, &err), VIT_OK);
    ck_assert_int_eq(vit__embed_ids(s, ids, nt, T, txt, &err), VIT_OK);
    double ci = min_cosine(img, wi.data, ni, E);
    double ct = min_cosine(txt, wt.data, nt, E);
    printf("%s int8: cosine to transformers' fp32: images >= %.6f, texts >= "
           "%.6f\n", name, ci, ct);
    ck_assert(ci >= MIN_COSINE);
    ck_assert(ct >= MIN_COSINE);
    free(img), free(txt), free(ids);
    vit_array_free(&px), vit_array_free(&wi), vit_array_free(&ida),
        vit_array_free(&wt);
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
    tcase_add_test(tc, quantize_rows_within_half_step);
    tcase_add_test(tc, epilogue_activation_and_ranges);
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
    suite_add_tcase(s, tc);
    return s;
}
