/*
 * The float32 linear layer (vit__sgemm): the AVX-512 kernel and the
 * OpenBLAS fallback against the product in double precision, on shapes
 * with tails in rows (panels of 48, the rows past them), columns (tiles of
 * 8, segments that end inside a tile) and k (vectors of 16), with and
 * without bias, stored (with or without an activation) and accumulated;
 * columns outside the asked range
 * are left alone, and the kernel gives the same bits for a product split
 * by columns as for the whole.
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

enum { NONE = 0, GELU = 1 + VIT_ACT_GELU, QUICK = 1 + VIT_ACT_QUICK_GELU };

static const struct {
    int M, seg, nseg, K, n0, n1, bias, accumulate, act;
} shapes[] = {
    {1, 8, 1, 16, 0, 8, 1, 0, GELU},   /* one row, one tile, one vector */
    {2, 7, 1, 1, 0, 7, 0, 0, NONE},    /* K = 1, short tile */
    {3, 9, 1, 17, 0, 9, 1, 1, NONE},   /* k tail, a tile and one column */
    {47, 16, 1, 100, 0, 16, 1, 0, QUICK}, /* rows short of a panel */
    {48, 24, 1, 33, 0, 24, 0, 1, NONE},   /* one whole panel */
    {50, 20, 1, 64, 0, 20, 1, 1, NONE},   /* a panel and two rows */
    {97, 10, 3, 45, 0, 30, 1, 0, NONE},   /* fused q, k, v: tiles across
                                             segments */
    {197, 10, 3, 31, 3, 27, 1, 1, NONE},  /* a column range inside segments */
    {60, 40, 1, 3000, 8, 37, 1, 0, GELU}, /* long k: one panel a chunk */
    {250, 50, 1, 3000, 0, 50, 0, 1, NONE}, /* several chunks, rows past
                                              them */
    {400, 13, 1, 200, 0, 13, 1, 0, GELU}, /* several panels a chunk */
    {100, 24, 1, 800, 0, 24, 1, 0, NONE}, /* two k blocks, bias in the
                                             first */
};

static double activation(double x, int act)
{
    if (act == GELU)
        return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
    if (act == QUICK)
        return x / (1.0 + exp(-1.702 * x));
    return x;
}

/* out as vit__sgemm must leave it: columns [n0, n1) of the product, the
 * rest as it was. */
static void reference(float *ref, const float *out0, const float *x,
                      const float *const *w, const float *const *b, int M,
                      int seg, int nseg, int K, int n0, int n1, int acc,
                      int act)
{
    int N = seg * nseg;
    for (int s = 0; s < nseg; s++)
        for (int i = 0; i < M; i++)
            for (int c = 0; c < seg; c++) {
                size_t o = (size_t)s * M * seg + (size_t)i * seg + c;
                int n = s * seg + c;
                if (n < n0 || n >= n1 || n >= N) {
                    ref[o] = out0[o];
                    continue;
                }
                double sum = b[s] ? b[s][c] : 0.0;
                for (int k = 0; k < K; k++)
                    sum += (double)x[(size_t)i * K + k] *
                           w[s][(size_t)c * K + k];
                sum = activation(sum, act);
                ref[o] = (float)(acc ? out0[o] + sum : sum);
            }
}

START_TEST(sgemm_matches_double)
{
    int M = shapes[_i].M, seg = shapes[_i].seg, nseg = shapes[_i].nseg;
    int K = shapes[_i].K, n0 = shapes[_i].n0, n1 = shapes[_i].n1;
    int acc = shapes[_i].accumulate;
    size_t nout = (size_t)nseg * M * seg;
    unsigned seed = 11 + (unsigned)_i;
    float *x = malloc((size_t)M * K * sizeof *x);
    float *out0 = malloc(nout * sizeof *out0);
    float *ref = malloc(nout * sizeof *ref), *out = malloc(nout * sizeof *out);
    float *half = malloc(nout * sizeof *half);
    float *pack = malloc(vit__sgemm_pack_floats(M, K) * sizeof *pack);
    float *w[3] = {NULL}, *b[3] = {NULL};
    for (size_t i = 0; i < (size_t)M * K; i++)
        x[i] = frand(&seed);
    for (size_t i = 0; i < nout; i++)
        out0[i] = frand(&seed);
    vit__sgemm_op op = {.seg = seg, .ld = seg, .accumulate = acc,
                        .act = shapes[_i].act};
    for (int s = 0; s < nseg; s++) {
        w[s] = malloc((size_t)seg * K * sizeof *w[s]);
        for (size_t i = 0; i < (size_t)seg * K; i++)
            w[s][i] = frand(&seed);
        if (shapes[_i].bias) {
            b[s] = malloc((size_t)seg * sizeof *b[s]);
            for (int i = 0; i < seg; i++)
                b[s][i] = frand(&seed);
        }
        op.w[s] = w[s];
        op.b[s] = b[s];
    }
    reference(ref, out0, x, (const float *const *)w, (const float *const *)b,
              M, seg, nseg, K, n0, n1, acc, shapes[_i].act);
    for (int fallback = 0; fallback < 2; fallback++) {
        vit__sgemm_force_fallback(fallback);
        char what[64];
        snprintf(what, sizeof what, "sgemm %s, shape %d",
                 fallback ? "OpenBLAS" : "kernel", _i);
        memcpy(out, out0, nout * sizeof *out);
        for (int s = 0; s < nseg; s++)
            op.out[s] = out + (size_t)s * M * seg;
        /* Fewer rows than a panel need no packing scratch. */
        vit__sgemm(&op, x, M, K, n0, n1, M < VIT_SNR ? NULL : pack);
        ck_assert(tu_rel_diff(what, out, ref, nout) < 1e-5);
        /* Untouched outside the columns asked for, to the bit. */
        for (size_t i = 0; i < nout; i++)
            if (((int)(i / ((size_t)M * seg)) * seg + (int)(i % seg)) < n0 ||
                ((int)(i / ((size_t)M * seg)) * seg + (int)(i % seg)) >= n1)
                ck_assert(out[i] == out0[i]);
        /* Two calls on either side of a column give the bits of one
         * (the kernel's promise; OpenBLAS picks its kernels by shape). */
        if (!vit__sgemm_native())
            continue;
        int mid = n0 + (n1 - n0) / 2;
        memcpy(half, out0, nout * sizeof *half);
        for (int s = 0; s < nseg; s++)
            op.out[s] = half + (size_t)s * M * seg;
        vit__sgemm(&op, x, M, K, n0, mid, pack);
        vit__sgemm(&op, x, M, K, mid, n1, pack);
        ck_assert_msg(memcmp(half, out, nout * sizeof *out) == 0,
                      "%s: split at column %d differs", what, mid);
    }
    vit__sgemm_force_fallback(0);
    for (int s = 0; s < nseg; s++) {
        free(w[s]);
        free(b[s]);
    }
    free(x);
    free(out0);
    free(ref);
    free(out);
    free(half);
    free(pack);
}
END_TEST

/* The encoder's layers at the widths of ViT-B (D 768, F 3072) and the row
 * counts of one and two images split between threads: the kernel against
 * OpenBLAS, on a column block as a thread of two gets it. */
START_TEST(sgemm_model_shapes)
{
    static const int rows[] = {25, 50, 99, 197};
    static const int dims[][2] = {{768, 768}, {3072, 768}, {768, 3072}};
    int M = rows[_i % 4], N = dims[_i / 4][0], K = dims[_i / 4][1];
    unsigned seed = 5 + (unsigned)_i;
    float *x = malloc((size_t)M * K * sizeof *x);
    float *w = malloc((size_t)N * K * sizeof *w), *b = malloc(N * sizeof *b);
    float *out = calloc((size_t)M * N, sizeof *out);
    float *ref = calloc((size_t)M * N, sizeof *ref);
    float *pack = malloc(vit__sgemm_pack_floats(M, K) * sizeof *pack);
    for (size_t i = 0; i < (size_t)M * K; i++)
        x[i] = frand(&seed);
    for (size_t i = 0; i < (size_t)N * K; i++)
        w[i] = frand(&seed) * 0.05f;
    for (int i = 0; i < N; i++)
        b[i] = frand(&seed);
    vit__sgemm_op op = {{w}, {b}, {out}, N, N, 0, 0};
    vit__sgemm(&op, x, M, K, N / 2, N, pack);
    vit__sgemm_force_fallback(1);
    op.out[0] = ref;
    vit__sgemm(&op, x, M, K, N / 2, N, pack);
    vit__sgemm_force_fallback(0);
    ck_assert(tu_rel_diff("sgemm kernel vs OpenBLAS", out, ref,
                          (size_t)M * N) < 1e-5);
    free(x);
    free(w);
    free(b);
    free(out);
    free(ref);
    free(pack);
}
END_TEST

/* The encoder's ways of splitting a layer between threads: rows (a thread
 * per block of rows), columns (every thread all rows, its share of the
 * weights), and grids of both, on vit_rect (61 tokens) with four images,
 * the fourth a copy of the first: 244 rows make two row groups of 122 for
 * 2, 4 and 6 threads, none for 3 and 5. Each within the fixture's
 * tolerance of transformers, with the kernel and with OpenBLAS. */
START_TEST(encoder_splits_match_reference)
{
    static const int threads[] = {1, 2, 3, 4, 5, 6};
    vit_options opt = vit_options_default();
    opt.max_batch = 4;
    opt.threads = threads[_i];
    vit_state *st;
    vit_model *m = tu_load_fixture("vit_rect", &opt, &st);
    vit_array px = tu_fixture("vit_rect", "ref_pixels.npy");
    vit_array hid = tu_fixture("vit_rect", "ref_hidden.npy");
    size_t img = (size_t)px.shape[1] * px.shape[2] * px.shape[3];
    size_t per = (size_t)hid.shape[1] * hid.shape[2];
    float *four = malloc(4 * img * sizeof *four);
    float *ref = malloc(4 * per * sizeof *ref);
    memcpy(four, px.data, 3 * img * sizeof *four);
    memcpy(four + 3 * img, px.data, img * sizeof *four);
    memcpy(ref, hid.data, 3 * per * sizeof *ref);
    memcpy(ref + 3 * per, hid.data, per * sizeof *ref);
    for (int fallback = 0; fallback < 2; fallback++) {
        vit__sgemm_force_fallback(fallback);
        vit__forward_hidden(st, four, 4);
        char what[64];
        snprintf(what, sizeof what, "vit_rect, %d threads%s", threads[_i],
                 fallback ? ", OpenBLAS" : "");
        ck_assert(tu_rel_diff(what, vit__state_hidden(st), ref, 4 * per) <
                  1e-4);
    }
    vit__sgemm_force_fallback(0);
    free(four);
    free(ref);
    vit_array_free(&px);
    vit_array_free(&hid);
    vit_state_free(st);
    vit_model_free(m);
}
END_TEST

Suite *sgemm_suite(void)
{
    Suite *s = suite_create("sgemm");
    TCase *tc = tcase_create("float32 linear");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, sgemm_matches_double, 0,
                        (int)(sizeof shapes / sizeof *shapes));
    tcase_add_loop_test(tc, sgemm_model_shapes, 0, 12);
    tcase_add_loop_test(tc, encoder_splits_match_reference, 0, 6);
    suite_add_tcase(s, tc);
    return s;
}
