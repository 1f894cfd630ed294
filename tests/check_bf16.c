/*
 * The bf16 mode (VIT_PRECISION_BF16). The rounding to bfloat16 is checked
 * against its definition (nearest, ties to even, NaN kept NaN); the whole
 * models against the transformers fixtures, as int8's are: bfloat16
 * changes numbers, so the contract is a cosine similarity of at least
 * 0.999 per output vector. Every model runs both ways this machine can:
 * through oneDNN where the CPU has AVX512-BF16 or AMX-BF16 (under
 * VIT_ISA), and with the rounded weights widened for the float32 kernel
 * (the tests' hook forces that way on any CPU). The held-out digits are
 * checked in check_models.c.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/cpu.h"
#include "testutil.h"
#include "vit/vit_impl.h"

/* The contract: per output vector, against float32. */
#define MIN_COSINE 0.999

static uint32_t bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* The definition, in double: the nearer of the two bfloat16 neighbours,
 * the even one (its last kept bit 0) at a tie. */
static uint16_t round_ref(float f)
{
    uint32_t u = bits(f);
    if (isnan(f))
        return 0; /* checked apart */
    uint32_t lo = u & 0xffff0000u, hi = lo + 0x10000u;
    double d = f, dl = from_bits(lo), dh = from_bits(hi);
    if (isinf(f))
        return (uint16_t)(u >> 16);
    double el = fabs(d - dl), eh = fabs(dh - d);
    if ((lo & 0x7fffffffu) == 0x7f7f0000u && (u & 0xffffu) >= 0x8000u)
        return (uint16_t)(hi >> 16); /* past the largest: infinity */
    if (el < eh || (el == eh && ((lo >> 16) & 1) == 0))
        return (uint16_t)(lo >> 16);
    return (uint16_t)(hi >> 16);
}

START_TEST(rounding_as_defined)
{
    enum { N = 4096 };
    float *x = malloc(N * sizeof *x);
    vit__bf16 *got = malloc(N * sizeof *got);
    unsigned seed = 7;
    for (int i = 0; i < N; i++) {
        seed = seed * 1103515245u + 12345u;
        uint32_t u = seed ^ (seed << 13);
        /* Every eighth one a tie or a near-tie, some denormals, both
         * signs. */
        if (i % 8 == 0)
            u = (u & 0xffff0000u) | 0x8000u;
        else if (i % 8 == 1)
            u = (u & 0xffff0000u) | 0x7fffu;
        else if (i % 8 == 2)
            u &= 0x807fffffu;
        x[i] = from_bits(u);
        if (isnan(x[i]))
            x[i] = 1.5f;
    }
    x[0] = 3.0f; /* exact */
    x[1] = from_bits(0x7f7fffffu); /* FLT_MAX: rounds up to infinity */
    x[2] = -INFINITY;
    x[3] = -0.0f;
    vit__bf16_round(got, x, N);
    for (int i = 0; i < N; i++)
        ck_assert_msg(got[i] == round_ref(x[i]),
                      "%08x -> %04x, want %04x", bits(x[i]), got[i],
                      round_ref(x[i]));
    /* NaN stays NaN (quiet), of either sign. */
    float nan[3] = {from_bits(0x7fc00000u), from_bits(0xff800001u),
                    from_bits(0x7fffffffu)};
    vit__bf16 nb[3];
    vit__bf16_round(nb, nan, 3);
    for (int i = 0; i < 3; i++) {
        ck_assert(isnan(from_bits((uint32_t)nb[i] << 16)));
        ck_assert_uint_eq(nb[i] >> 15, bits(nan[i]) >> 31);
    }
    /* The softmax that writes bfloat16 rounds what vit__softmax gives. */
    enum { R = 8, C = 197 };
    vit__bf16 *sc = malloc(R * C * sizeof *sc);
    float *sx = malloc(R * C * sizeof *sx), *sy = malloc(R * C * sizeof *sy);
    for (int i = 0; i < R * C; i++)
        sx[i] = sy[i] = (float)((i * 37) % 101) / 9.0f - 5.0f;
    vit__softmax(sx, R, C);
    vit__softmax_bf16(sy, R, C, 1.0f, sc);
    for (int i = 0; i < R * C; i++)
        ck_assert_uint_eq(sc[i], round_ref(sx[i]));
    free(sx), free(sy), free(sc);
    /* The widening form gives the same numbers. */
    vit__bf16_round_f32(x, N);
    for (int i = 0; i < N; i++)
        ck_assert_uint_eq(bits(x[i]), (uint32_t)got[i] << 16);
    free(x);
    free(got);
}
END_TEST

/* The path follows the CPU table: oneDNN exactly where cpu_bf16. */
START_TEST(path_follows_the_cpu)
{
    ck_assert_int_eq(vit__bf16_onednn(), cpu_bf16());
    vit__bf16_force_widen(1);
    ck_assert_int_eq(vit__bf16_onednn(), 0);
    vit__bf16_force_widen(0);
    printf("bf16 path: %s (cpu path %s, avx512bf16 %d, amx_bf16 %d)\n",
           cpu_bf16() ? "oneDNN" : "widened to float32",
           cpu_isa_name(cpu_get()->isa), cpu_get()->avx512bf16,
           cpu_get()->amx_bf16);
}
END_TEST

/* ---- attention in bfloat16 ---- */

/* Whether this CPU runs bf16 on oneDNN; if not, says what runs instead. */
static int on_onednn(const char *what, const char *instead)
{
    if (vit__bf16_onednn())
        return 1;
    printf("%s: no bfloat16 on this CPU under its path (%s); %s\n", what,
           cpu_isa_name(cpu_get()->isa), instead);
    return 0;
}

static float widen(vit__bf16 h)
{
    return from_bits((uint32_t)h << 16);
}

/* One attention's heads in bf16 on oneDNN against the definition in
 * double: q, k and v rounded to bfloat16, the scores scaled by 1/sqrt(dh)
 * and softmaxed, the probabilities rounded for their product with v. Odd
 * shapes and a ViT-B head's (dh 64), with the causal mask too. */
START_TEST(attention_bf16_as_defined)
{
    if (!on_onednn("attention in bf16",
                   "the bf16 mode keeps attention in float32 here"))
        return;
    static const int shapes[][3] = {{5, 6, 2}, {50, 128, 2}, {197, 128, 2}};
    for (int sh = 0; sh < 3; sh++) {
        int T = shapes[sh][0], D = shapes[sh][1], H = shapes[sh][2];
        int dh = D / H;
        size_t n = (size_t)T * D;
        float *q = malloc(n * sizeof *q), *k = malloc(n * sizeof *k),
              *v = malloc(n * sizeof *v), *out = malloc(n * sizeof *out),
              *ref = malloc(n * sizeof *ref), *f32 = malloc(n * sizeof *f32),
              *work = malloc(vit__attention_floats(T, dh) * sizeof *work);
        double *sc = malloc((size_t)T * sizeof *sc);
        unsigned seed = 11 + sh;
        for (size_t i = 0; i < n; i++) {
            q[i] = (float)(rand_r(&seed) % 2001) / 250.0f - 4.0f;
            k[i] = (float)(rand_r(&seed) % 2001) / 250.0f - 4.0f;
            v[i] = (float)(rand_r(&seed) % 2001) / 1000.0f - 1.0f;
        }
        vit__bctx *bc;
        vit_error err;
        ck_assert_int_eq(vit__bctx_new(&bc, 1, &err), VIT_OK);
        for (int causal = 0; causal < 2; causal++) {
            for (int h = 0; h < H; h++)
                for (int i = 0; i < T; i++) {
                    int last = causal ? i : T - 1;
                    double mx = -INFINITY, sum = 0;
                    for (int j = 0; j <= last; j++) {
                        double acc = 0;
                        for (int d = 0; d < dh; d++) {
                            vit__bf16 a, b;
                            vit__bf16_round(&a, &q[(size_t)i * D + h * dh + d],
                                            1);
                            vit__bf16_round(&b, &k[(size_t)j * D + h * dh + d],
                                            1);
                            acc += (double)widen(a) * widen(b);
                        }
                        sc[j] = acc / sqrt((double)dh);
                        mx = fmax(mx, sc[j]);
                    }
                    for (int j = 0; j <= last; j++)
                        sum += sc[j] = exp(sc[j] - mx);
                    for (int d = 0; d < dh; d++) {
                        double acc = 0;
                        for (int j = 0; j <= last; j++) {
                            float p = (float)(sc[j] / sum);
                            vit__bf16 pb, vb;
                            vit__bf16_round(&pb, &p, 1);
                            vit__bf16_round(&vb, &v[(size_t)j * D + h * dh + d],
                                            1);
                            acc += (double)widen(pb) * widen(vb);
                        }
                        ref[(size_t)i * D + h * dh + d] = (float)acc;
                    }
                }
            vit__attention(out, q, k, v, work, 1, T, D, H, causal, bc);
            ck_assert_int_eq(vit__bctx_status(bc, &err), VIT_OK);
            vit__attention(f32, q, k, v, work, 1, T, D, H, causal, NULL);
            char what[64];
            snprintf(what, sizeof what, "attention bf16 T %d dh %d%s", T, dh,
                     causal ? " causal" : "");
            /* The sums' order, and a probability a float32 softmax puts on
             * the other side of a rounding boundary: 1e-3 of the largest
             * output. Not rounding q, k or the probabilities, or a wrong
             * layout, is far beyond. */
            ck_assert(tu_rel_diff(what, out, ref, n) < 1e-3);
            double c = tu_min_cosine(out, f32, T, D);
            printf("%s: cosine to float32 attention >= %.6f\n", what, c);
            ck_assert(c >= MIN_COSINE);
        }
        vit__bctx_free(bc);
        free(q), free(k), free(v), free(out), free(ref), free(f32);
        free(work), free(sc);
    }
}
END_TEST

/* The MLP's first product with its activation applied by oneDNN, every
 * activation vit knows, against the definition in double: act(round(a) @
 * round(w)^T + bias), rounded to bfloat16. A sum on the other side of a
 * rounding boundary may round the other way: one unit in the last place
 * is allowed, and nothing more. */
START_TEST(activated_product_as_defined)
{
    if (!on_onednn("activated bf16 product",
                   "the widened path applies vit's own activation"))
        return;
    enum { M = 37, K = 96, N = 80 };
    float *a = malloc(M * K * sizeof *a), *w = malloc(N * K * sizeof *w),
          bias[N];
    vit__bf16 *ab = malloc(M * K * sizeof *ab),
              *wb = malloc(N * K * sizeof *wb),
              *got = malloc(M * N * sizeof *got);
    unsigned seed = 5;
    for (int i = 0; i < M * K; i++)
        a[i] = (float)(rand_r(&seed) % 2001) / 500.0f - 2.0f;
    for (int i = 0; i < N * K; i++)
        w[i] = (float)(rand_r(&seed) % 2001) / 4000.0f - 0.25f;
    for (int i = 0; i < N; i++)
        bias[i] = (float)(rand_r(&seed) % 2001) / 1000.0f - 1.0f;
    vit__bf16_round(ab, a, M * K);
    vit__bf16_round(wb, w, N * K);
    vit__bmat *b;
    vit__bctx *bc;
    vit_error err;
    ck_assert_int_eq(vit__bmat_pack(&b, w, bias, N, K, &err), VIT_OK);
    ck_assert_int_eq(vit__bctx_new(&bc, 1, &err), VIT_OK);
    for (int act = VIT_ACT_GELU; act <= VIT_ACT_TANH; act++) {
        vit__bmat_run_act(bc, 0, b, ab, M, got, (vit__act)act);
        ck_assert_int_eq(vit__bctx_status(bc, &err), VIT_OK);
        double worst = 0;
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                double x = bias[j];
                for (int k = 0; k < K; k++)
                    x += (double)widen(ab[i * K + k]) * widen(wb[j * K + k]);
                double y = tu_act_ref(act, x);
                /* In units in the last place of a bfloat16 near y (8
                 * significant bits), floored at the ulp of 2^-6 for values
                 * near zero, where the activations' own approximations
                 * show: correctly rounded is within 0.5. */
                double ulp = ldexp(1.0, ilogb(fmax(fabs(y), 1.0 / 64)) - 7);
                worst = fmax(worst, fabs(widen(got[i * N + j]) - y) / ulp);
            }
        printf("activated bf16 product, activation %d: within %.3f ulp\n",
               act, worst);
        ck_assert_msg(worst <= 1.0, "activation %d: %g ulp", act, worst);
    }
    vit__bctx_free(bc);
    vit__bmat_free(b);
    free(a), free(w), free(ab), free(wb), free(got);
}
END_TEST

/* ---- whole models against transformers ---- */

/* The ways this machine can run bf16: 0 its own (oneDNN where the CPU
 * allows), 1 widened. Where the CPU has no bfloat16, both are widened. */
static const char *way_name(int way)
{
    return way || !vit__bf16_onednn() ? "widened" : "oneDNN";
}

static vit_model *load_bf16(const char *name, int way, int max_batch,
                            vit_state **s)
{
    vit_options opt = vit_options_default();
    opt.precision = VIT_PRECISION_BF16;
    opt.max_batch = max_batch;
    vit__bf16_force_widen(way);
    vit_model *m = tu_load_fixture(name, &opt, s);
    vit__bf16_force_widen(0);
    return m;
}

static const char *vits[] = {"vit_tiny",      "vit_nobias_f16", "vit_bf16",
                             "vit_sharded",   "vit_model",      "vit_rect",
                             "deit_teacher",  "dinov2_reg_cls", "dinov2_swiglu",
                             "timm/timm_qknorm", "timm/timm_map"};
#define NVITS ((int)(sizeof vits / sizeof *vits))

START_TEST(vit_bf16_near_reference)
{
    const char *name = vits[_i % NVITS];
    int way = _i / NVITS;
    vit_array px = tu_fixture(name, "ref_pixels.npy");
    int n = (int)px.shape[0];
    /* A batch of all the images, and one at a time: the products differ
     * in M, and oneDNN makes one for each. */
    for (int mb = n; mb >= 1; mb = mb > 1 ? 1 : 0) {
        vit_state *s;
        vit_model *m = load_bf16(name, way, mb, &s);
        vit_model_info in;
        vit_model_get_info(m, &in);
        vit_array want = tu_fixture(name, in.num_labels ? "ref_logits.npy"
                                                        : "ref_embed.npy");
        int dim = (int)want.shape[1];
        float *out = malloc((size_t)n * dim * sizeof *out);
        vit_error err;
        if (in.num_labels)
            ck_assert_int_eq(vit_classify_pixels(s, px.data, n, 0, NULL, out,
                                                 &err),
                             VIT_OK);
        else
            ck_assert_int_eq(vit_embed_pixels(s, px.data, n, out, &err),
                             VIT_OK);
        double c = tu_min_cosine(out, want.data, n, dim);
        printf("%s bf16 (%s, batch %d): %s cosine to the reference's fp32 >= "
               "%.6f\n",
               name, way_name(way), mb, in.num_labels ? "logits" : "embedding",
               c);
        ck_assert(c >= MIN_COSINE);
        free(out);
        vit_array_free(&want);
        vit_state_free(s);
        vit_model_free(m);
    }
    vit_array_free(&px);
}
END_TEST

static const char *clips[] = {"clip_tiny", "clip_gelu_f16", "siglip_tiny"};
#define NCLIPS ((int)(sizeof clips / sizeof *clips))

START_TEST(clip_bf16_near_reference)
{
    const char *name = clips[_i % NCLIPS];
    int way = _i / NCLIPS;
    vit_state *s;
    vit_model *m = load_bf16(name, way, 2, &s);
    double ci, ct;
    tu_pair_cosines(s, name, &ci, &ct);
    printf("%s bf16 (%s): cosine to transformers' fp32: images >= %.6f, "
           "texts >= %.6f\n",
           name, way_name(way), ci, ct);
    ck_assert(ci >= MIN_COSINE);
    ck_assert(ct >= MIN_COSINE);
    vit_state_free(s);
    vit_model_free(m);
}
END_TEST

/* bf16 really rounds: the outputs are not fp32's bits, and the two ways
 * agree with each other as closely as each does with fp32. */
START_TEST(bf16_changes_numbers)
{
    vit_array px = tu_fixture("vit_tiny", "ref_pixels.npy");
    int n = (int)px.shape[0];
    float *out[3];
    for (int k = 0; k < 3; k++) {
        vit_state *s;
        vit_model *m;
        if (k == 2) {
            vit_options opt = vit_options_default();
            opt.max_batch = n;
            m = tu_load_fixture("vit_tiny", &opt, &s);
        } else {
            m = load_bf16("vit_tiny", k, n, &s);
        }
        vit_model_info in;
        vit_model_get_info(m, &in);
        out[k] = malloc((size_t)n * in.num_labels * sizeof *out[k]);
        vit_error err;
        ck_assert_int_eq(vit_classify_pixels(s, px.data, n, 0, NULL, out[k],
                                             &err),
                         VIT_OK);
        vit_state_free(s);
        vit_model_free(m);
    }
    ck_assert(memcmp(out[0], out[2], sizeof(float) * 2) != 0);
    ck_assert(memcmp(out[1], out[2], sizeof(float) * 2) != 0);
    for (int k = 0; k < 3; k++)
        free(out[k]);
    vit_array_free(&px);
}
END_TEST

/* The memory report counts the bf16 weights, and only in bf16: two bytes
 * a weight or more (oneDNN's layout may pad) through oneDNN, two where the
 * float32 kernel widens them. Their float32 originals are given back. */
START_TEST(memory_counts_bf16_weights)
{
    /* vit_tiny: 2 layers of D 32, F 64: q, k, v and out 32 x 32, the MLP
     * 64 x 32 and 32 x 64. */
    size_t weights = 2 * (4 * 32 * 32 + 2 * 64 * 32);
    for (int way = 0; way < 2; way++) {
        vit_state *s;
        vit_model *m = load_bf16("vit_tiny", way, 2, &s);
        vit_memory b;
        vit_state_memory(s, &b);
        vit_state_free(s);
        vit_model_free(m);
        ck_assert_uint_eq(b.weights_int8, 0);
        if (way == 0 && vit__bf16_onednn())
            ck_assert(b.weights_bf16 >= 2 * weights &&
                      b.weights_bf16 < 4 * weights);
        else
            ck_assert_uint_eq(b.weights_bf16, 2 * weights);
    }
    vit_options opt = vit_options_default();
    vit_state *s;
    vit_model *m = tu_load_fixture("vit_tiny", &opt, &s);
    vit_memory f;
    vit_state_memory(s, &f);
    ck_assert_uint_eq(f.weights_bf16, 0);
    vit_state_free(s);
    vit_model_free(m);
}
END_TEST

/* Threads: any count gives the same numbers through oneDNN (each pool
 * thread runs its rows alone), here 1 and 3 threads. */
START_TEST(threads_agree)
{
    vit_array px = tu_fixture("vit_model", "ref_pixels.npy");
    int n = (int)px.shape[0];
    float *out[2];
    int dim = 0;
    for (int k = 0; k < 2; k++) {
        vit_options opt = vit_options_default();
        opt.precision = VIT_PRECISION_BF16;
        opt.max_batch = n;
        opt.threads = k ? 3 : 1;
        vit_state *s;
        vit_model *m = tu_load_fixture("vit_model", &opt, &s);
        vit_model_info in;
        vit_model_get_info(m, &in);
        dim = in.embed_dim;
        out[k] = malloc((size_t)n * dim * sizeof *out[k]);
        vit_error err;
        ck_assert_int_eq(vit_embed_pixels(s, px.data, n, out[k], &err),
                         VIT_OK);
        vit_state_free(s);
        vit_model_free(m);
    }
    /* Rows are independent in every op, and a row's product does not
     * depend on the rows beside it in oneDNN's kernels either; allow the
     * last bit for a kernel that blocks K by M. */
    double worst = 0;
    for (size_t i = 0; i < (size_t)n * dim; i++)
        worst = fmax(worst, fabs(out[0][i] - out[1][i]) /
                                fmax(1e-3, fabs(out[0][i])));
    ck_assert_msg(worst < 1e-4, "1 vs 3 threads differ by %g", worst);
    free(out[0]), free(out[1]);
    vit_array_free(&px);
}
END_TEST

START_TEST(unknown_precision_refused)
{
    vit_options opt = vit_options_default();
    opt.precision = (vit_precision)3;
    vit_model *m = NULL;
    vit_error err;
    ck_assert_int_eq(vit_model_load(FIXTURES "/vit_tiny", &opt, &m, &err),
                     VIT_E_ARG);
    ck_assert_ptr_null(m);
    ck_assert_ptr_nonnull(strstr(err.msg, "unknown precision 3"));
    /* The command names the values it takes. */
    tu_run_result r;
    tu_run(&r, "classify", "--model", FIXTURES "/vit_tiny", "--precision",
           "fp16", "x.png", NULL);
    ck_assert_int_eq(r.code, 2);
    ck_assert_msg(strstr(r.err, "--precision is fp32, int8 or bf16, not "
                                "'fp16'") != NULL,
                  "%s", r.err);
    tu_run_free(&r);
}
END_TEST

Suite *bf16_suite(void)
{
    Suite *s = suite_create("bf16");
    TCase *tc = tcase_create("rounding");
    tcase_add_test(tc, rounding_as_defined);
    tcase_add_test(tc, path_follows_the_cpu);
    tcase_add_test(tc, attention_bf16_as_defined);
    tcase_add_test(tc, activated_product_as_defined);
    suite_add_tcase(s, tc);
    tc = tcase_create("models");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, vit_bf16_near_reference, 0, 2 * NVITS);
    tcase_add_loop_test(tc, clip_bf16_near_reference, 0, 2 * NCLIPS);
    tcase_add_test(tc, bf16_changes_numbers);
    tcase_add_test(tc, memory_counts_bf16_weights);
    tcase_add_test(tc, threads_agree);
    tcase_add_test(tc, unknown_precision_refused);
    suite_add_tcase(s, tc);
    return s;
}
