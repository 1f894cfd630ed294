/*
 * The float32 linear layer (vit__sgemm) on every path this machine can run
 * (AVX-512, AVX2, plain C; forced by vit__sgemm_force_isa): against the
 * product in double precision, on shapes with tails in rows (panels, the
 * narrower panel past them, the rows read in place), columns (blocks of
 * 16, tiles of 4 and 8, segments that end inside a block) and k (vectors,
 * k blocks), with and without bias, stored (with or without an activation)
 * and accumulated; columns outside the asked range are left alone.
 *
 * And to the bit, the promise that an output is one chain of FMAs along k
 * whatever computes it: every path gives the bits of every other; a row's
 * outputs are the same whatever the number of rows, the row's place among
 * them, the chunks the rows come in, the columns asked with it, and
 * whether there is packing scratch; bfloat16 weights give the bits of
 * their float32 widenings; and the encoder gives an image the same bits
 * whatever the batch and the threads.
 */
#include <cblas.h>
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

enum { NONE = 0, GELU = 1 + VIT_ACT_GELU, QUICK = 1 + VIT_ACT_QUICK_GELU };

static const char *const path_name[] = {"generic", "avx2", "avx512"};

/* Runs path isa from now on; 0 (and the CPU table's path again) where the
 * CPU, under VIT_ISA, cannot. */
static int use_path(int isa)
{
    if (vit__sgemm_force_isa(isa) == isa)
        return 1;
    vit__sgemm_force_isa(-1);
    return 0;
}

/* A product and its operands: nseg segments of seg columns (fused q, k, v
 * when 3), out (nseg x M x seg) starting from out0. */
typedef struct {
    int M, seg, nseg, K;
    float *x, *out0, *w[3], *b[3];
    vit__sgemm_op op;
} product;

static void product_init(product *p, int M, int seg, int nseg, int K,
                         int bias, int acc, int act, unsigned seed)
{
    size_t nout = (size_t)nseg * M * seg;
    memset(p, 0, sizeof *p);
    p->M = M, p->seg = seg, p->nseg = nseg, p->K = K;
    p->x = malloc((size_t)M * K * sizeof *p->x);
    p->out0 = malloc(nout * sizeof *p->out0);
    for (size_t i = 0; i < (size_t)M * K; i++)
        p->x[i] = frand(&seed);
    for (size_t i = 0; i < nout; i++)
        p->out0[i] = frand(&seed);
    p->op = (vit__sgemm_op){.seg = seg, .ld = seg, .accumulate = acc,
                            .act = act};
    for (int s = 0; s < nseg; s++) {
        p->w[s] = malloc((size_t)seg * K * sizeof *p->w[s]);
        for (size_t i = 0; i < (size_t)seg * K; i++)
            p->w[s][i] = frand(&seed);
        if (bias) {
            p->b[s] = malloc((size_t)seg * sizeof *p->b[s]);
            for (int i = 0; i < seg; i++)
                p->b[s][i] = frand(&seed);
        }
        p->op.w[s] = p->w[s];
        p->op.b[s] = p->b[s];
    }
}

static void product_free(product *p)
{
    for (int s = 0; s < p->nseg; s++) {
        free(p->w[s]);
        free(p->b[s]);
    }
    free(p->x);
    free(p->out0);
}

static size_t product_floats(const product *p)
{
    return (size_t)p->nseg * p->M * p->seg;
}

/* out = out0, then rows [r0, r1) x columns [n0, n1) of the product into it
 * (with packing scratch sized for those rows, or none). */
static void run_rows(const product *p, float *out, int r0, int r1, int n0,
                     int n1, int scratch)
{
    vit__sgemm_op op = p->op;
    for (int s = 0; s < p->nseg; s++)
        op.out[s] = out + (size_t)s * p->M * p->seg + (size_t)r0 * p->seg;
    float *pack = scratch ? malloc(vit__sgemm_pack_floats(r1 - r0, p->K) *
                                   sizeof *pack)
                          : NULL;
    vit__sgemm(&op, p->x + (size_t)r0 * p->K, r1 - r0, p->K, n0, n1, pack);
    free(pack);
}

static void run(const product *p, float *out, int n0, int n1, int scratch)
{
    memcpy(out, p->out0, product_floats(p) * sizeof *out);
    run_rows(p, out, 0, p->M, n0, n1, scratch);
}

static const struct {
    int M, seg, nseg, K, n0, n1, bias, accumulate, act;
} shapes[] = {
    {1, 8, 1, 16, 0, 8, 1, 0, GELU},   /* one row, one tile, one vector */
    {2, 7, 1, 1, 0, 7, 0, 0, NONE},    /* K = 1, short tile */
    {3, 9, 1, 17, 0, 9, 1, 1, NONE},   /* k tail, a tile and one column */
    {47, 16, 1, 100, 0, 16, 1, 0, QUICK}, /* rows short of a panel */
    {48, 24, 1, 33, 0, 24, 0, 1, NONE},   /* one whole panel */
    {50, 20, 1, 64, 0, 20, 1, 1, NONE},   /* a panel and two rows */
    {97, 10, 3, 45, 0, 30, 1, 0, NONE},   /* fused q, k, v: blocks across
                                             segments */
    {197, 10, 3, 31, 3, 27, 1, 1, NONE},  /* a column range inside segments */
    {60, 40, 1, 3000, 8, 37, 1, 0, GELU}, /* long k: one panel a chunk */
    {250, 50, 1, 3000, 0, 50, 0, 1, NONE}, /* several chunks, rows past
                                              them */
    {400, 13, 1, 200, 0, 13, 1, 0, GELU}, /* several panels a chunk */
    {100, 24, 1, 800, 0, 24, 1, 0, NONE}, /* two k blocks, bias in the
                                             first */
    {77, 33, 1, 1000, 0, 33, 1, 1, NONE}, /* narrower panels and rows in
                                             place, two k blocks */
    {31, 21, 1, 23, 0, 21, 1, 0, QUICK},  /* a panel of 16 or 24 and rows */
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
static void reference(float *ref, const product *p, int n0, int n1)
{
    int M = p->M, seg = p->seg, K = p->K, N = seg * p->nseg;
    for (int s = 0; s < p->nseg; s++)
        for (int i = 0; i < M; i++)
            for (int c = 0; c < seg; c++) {
                size_t o = (size_t)s * M * seg + (size_t)i * seg + c;
                int n = s * seg + c;
                if (n < n0 || n >= n1 || n >= N) {
                    ref[o] = p->out0[o];
                    continue;
                }
                double sum = p->b[s] ? p->b[s][c] : 0.0;
                for (int k = 0; k < K; k++)
                    sum += (double)p->x[(size_t)i * K + k] *
                           p->w[s][(size_t)c * K + k];
                sum = activation(sum, p->op.act);
                ref[o] = (float)(p->op.accumulate ? p->out0[o] + sum : sum);
            }
}

START_TEST(sgemm_matches_double)
{
    int n0 = shapes[_i].n0, n1 = shapes[_i].n1, M = shapes[_i].M;
    int seg = shapes[_i].seg;
    product p;
    product_init(&p, M, seg, shapes[_i].nseg, shapes[_i].K, shapes[_i].bias,
                 shapes[_i].accumulate, shapes[_i].act, 11 + (unsigned)_i);
    size_t nout = product_floats(&p);
    float *ref = malloc(nout * sizeof *ref), *out = malloc(nout * sizeof *out);
    float *first = malloc(nout * sizeof *first);
    float *again = malloc(nout * sizeof *again);
    reference(ref, &p, n0, n1);
    int runs = 0;
    for (int isa = CPU_ISA_GENERIC; isa <= CPU_ISA_AVX512; isa++) {
        if (!use_path(isa))
            continue;
        char what[64];
        snprintf(what, sizeof what, "sgemm %s, shape %d", path_name[isa],
                 _i);
        run(&p, out, n0, n1, 1);
        ck_assert(tu_rel_diff(what, out, ref, nout) < 1e-5);
        /* Untouched outside the columns asked for, to the bit. */
        for (size_t i = 0; i < nout; i++) {
            int n = (int)(i / ((size_t)M * seg)) * seg + (int)(i % seg);
            if (n < n0 || n >= n1)
                ck_assert(out[i] == p.out0[i]);
        }
        /* The bits of the first path that ran. */
        if (runs++ == 0)
            memcpy(first, out, nout * sizeof *out);
        ck_assert_msg(memcmp(out, first, nout * sizeof *out) == 0,
                      "%s: differs from the %s path", what, path_name[0]);
        /* Two calls on either side of a column, and without scratch. */
        int mid = n0 + (n1 - n0) / 2;
        memcpy(again, p.out0, nout * sizeof *again);
        run_rows(&p, again, 0, M, n0, mid, 1);
        run_rows(&p, again, 0, M, mid, n1, 1);
        ck_assert_msg(memcmp(again, out, nout * sizeof *out) == 0,
                      "%s: split at column %d differs", what, mid);
        run(&p, again, n0, n1, 0);
        ck_assert_msg(memcmp(again, out, nout * sizeof *out) == 0,
                      "%s: without scratch differs", what);
    }
    ck_assert_int_ge(runs, 1);
    vit__sgemm_force_isa(-1);
    product_free(&p);
    free(ref);
    free(out);
    free(first);
    free(again);
}
END_TEST

/* bfloat16 weights (VIT_PRECISION_BF16 where oneDNN does not run) give,
 * on every path and every shape above, the bits of their float32
 * widenings: with scratch (widened a block at a time), without it (one at
 * a time, on the plain C path), split at a column, and with only the
 * middle segment of fused q, k, v in bfloat16. */
START_TEST(sgemm_bf16_weights)
{
    int n0 = shapes[_i].n0, n1 = shapes[_i].n1, nseg = shapes[_i].nseg;
    product p;
    product_init(&p, shapes[_i].M, shapes[_i].seg, nseg, shapes[_i].K,
                 shapes[_i].bias, shapes[_i].accumulate, shapes[_i].act,
                 29 + (unsigned)_i);
    size_t nw = (size_t)p.seg * p.K, nout = product_floats(&p);
    vit__bf16 *w16[3] = {0};
    for (int g = 0; g < nseg; g++) {
        w16[g] = malloc(nw * sizeof *w16[g]);
        vit__bf16_round(w16[g], p.w[g], nw);
        vit__bf16_round_f32(p.w[g], nw);
    }
    float *wide = malloc(nout * sizeof *wide), *out = malloc(nout * sizeof *out);
    int runs = 0;
    for (int isa = CPU_ISA_GENERIC; isa <= CPU_ISA_AVX512; isa++) {
        if (!use_path(isa))
            continue;
        runs++;
        run(&p, wide, n0, n1, 1);
        product b = p;
        for (int mixed = 0; mixed < (nseg > 1 ? 2 : 1); mixed++) {
            for (int g = 0; g < nseg; g++)
                b.op.w16[g] = !mixed || g == 1 ? w16[g] : NULL;
            for (int scratch = 1; scratch >= 0; scratch--) {
                run(&b, out, n0, n1, scratch);
                ck_assert_msg(memcmp(out, wide, nout * sizeof *out) == 0,
                              "bf16 %s, shape %d, scratch %d, mixed %d: not "
                              "the widened weights' bits",
                              path_name[isa], _i, scratch, mixed);
            }
            int mid = n0 + (n1 - n0) / 2;
            memcpy(out, p.out0, nout * sizeof *out);
            run_rows(&b, out, 0, p.M, n0, mid, 1);
            run_rows(&b, out, 0, p.M, mid, n1, 1);
            ck_assert_msg(memcmp(out, wide, nout * sizeof *out) == 0,
                          "bf16 %s, shape %d: split at column %d differs",
                          path_name[isa], _i, mid);
        }
    }
    ck_assert_int_ge(runs, 1);
    vit__sgemm_force_isa(-1);
    for (int g = 0; g < nseg; g++)
        free(w16[g]);
    product_free(&p);
    free(wide);
    free(out);
}
END_TEST

/* The row-independence of one product on every path: 100 rows of fused
 * q, k, v (3 segments of 20 columns) at K, as computed whole on the plain
 * C path, against the same rows computed as the first M (M = 1..100), at
 * offsets, in chunks of mixed sizes, with the columns in pieces, and
 * without scratch. */
static const struct {
    int K, bias, accumulate, act;
} row_cases[] = {
    {100, 1, 0, NONE},  /* k tails of 8 and 16 */
    {1000, 1, 1, NONE}, /* two k blocks of 512 (K > 768), accumulated */
    {300, 1, 0, GELU},  /* an activation */
    {37, 0, 1, QUICK},  /* no bias, an activation, accumulated */
};

START_TEST(sgemm_rows_independent)
{
    enum { ROWS = 100, SEG = 20, NSEG = 3, N = SEG * NSEG };
    int c = _i / 3, isa = _i % 3;
    if (!use_path(isa))
        return;
    product p;
    product_init(&p, ROWS, SEG, NSEG, row_cases[c].K, row_cases[c].bias,
                 row_cases[c].accumulate, row_cases[c].act,
                 101 + (unsigned)c);
    size_t nout = product_floats(&p);
    float *ref = malloc(nout * sizeof *ref), *out = malloc(nout * sizeof *out);
    vit__sgemm_force_isa(CPU_ISA_GENERIC);
    run(&p, ref, 0, N, 1);
    use_path(isa);
    char what[80];
    snprintf(what, sizeof what, "sgemm %s, K %d", path_name[isa],
             row_cases[c].K);
    /* The whole against the plain C path, and each row as it must be:
     * rows [r0, r1) of each segment as ref has them, the rest as out0. */
#define ROWS_ARE(r0, r1, fmt, ...)                                          \
    for (int s = 0; s < NSEG; s++) {                                        \
        const float *got = out + (size_t)s * ROWS * SEG;                    \
        const float *want = ref + (size_t)s * ROWS * SEG;                   \
        const float *was = p.out0 + (size_t)s * ROWS * SEG;                 \
        ck_assert_msg(memcmp(got + (size_t)(r0) * SEG,                      \
                             want + (size_t)(r0) * SEG,                     \
                             (size_t)((r1) - (r0)) * SEG * sizeof *got) ==  \
                              0,                                            \
                      "%s: " fmt ": rows differ", what, __VA_ARGS__);       \
        ck_assert(memcmp(got, was, (size_t)(r0) * SEG * sizeof *got) == 0); \
        ck_assert(memcmp(got + (size_t)(r1) * SEG,                          \
                         was + (size_t)(r1) * SEG,                          \
                         (size_t)(ROWS - (r1)) * SEG * sizeof *got) == 0);  \
    }
    for (int M = 1; M <= ROWS; M++) {
        memcpy(out, p.out0, nout * sizeof *out);
        run_rows(&p, out, 0, M, 0, N, 1);
        ROWS_ARE(0, M, "the first %d rows", M)
    }
    static const int offsets[][2] = {{1, 2},   {5, 11},  {17, 66},
                                     {33, 99}, {49, 100}, {52, 100}};
    for (size_t i = 0; i < sizeof offsets / sizeof *offsets; i++)
        for (int scratch = 0; scratch < 2; scratch++) {
            int r0 = offsets[i][0], r1 = offsets[i][1];
            memcpy(out, p.out0, nout * sizeof *out);
            run_rows(&p, out, r0, r1, 0, N, scratch);
            ROWS_ARE(r0, r1, "rows %d..%d, scratch %d", r0, r1, scratch)
        }
    /* All rows, in chunks (a whole panel, a narrower one, rows in place,
     * several panels), the columns in pieces across segments. */
    static const int chunks[][8] = {{1, 7, 16, 24, 48, 4, 0},
                                    {49, 51, 0},
                                    {3, 97, 0},
                                    {96, 1, 3, 0},
                                    {13, 13, 13, 13, 13, 13, 13, 9}};
    static const int cols[][4] = {{0, N}, {0, 8, 27, N}, {0, 16, 17, N}};
    for (size_t i = 0; i < sizeof chunks / sizeof *chunks; i++)
        for (size_t j = 0; j < sizeof cols / sizeof *cols; j++) {
            memcpy(out, p.out0, nout * sizeof *out);
            for (int k = 0, r0 = 0; k < 8 && chunks[i][k]; k++) {
                int r1 = r0 + chunks[i][k];
                for (int q = 0; q < 3 && cols[j][q] < N; q++)
                    run_rows(&p, out, r0, r1, cols[j][q], cols[j][q + 1],
                             (k + q) % 2);
                r0 = r1;
            }
            ROWS_ARE(0, ROWS, "chunks %zu, columns %zu", i, j)
        }
#undef ROWS_ARE
    vit__sgemm_force_isa(-1);
    product_free(&p);
    free(ref);
    free(out);
}
END_TEST

/* The encoder's layers at the widths of ViT-B (D 768, F 3072) and the row
 * counts of one and two images split between threads, on a column block as
 * a thread of two gets it: every path the bits of the plain C one, and
 * within rounding of OpenBLAS. */
START_TEST(sgemm_model_shapes)
{
    static const int rows[] = {25, 50, 99, 197};
    static const int dims[][2] = {{768, 768}, {3072, 768}, {768, 3072}};
    int M = rows[_i % 4], N = dims[_i / 4][0], K = dims[_i / 4][1];
    unsigned seed = 5 + (unsigned)_i;
    float *x = malloc((size_t)M * K * sizeof *x);
    float *w = malloc((size_t)N * K * sizeof *w), *b = malloc(N * sizeof *b);
    float *out = calloc((size_t)M * N, sizeof *out);
    float *first = calloc((size_t)M * N, sizeof *first);
    float *ref = calloc((size_t)M * N, sizeof *ref);
    float *pack = malloc(vit__sgemm_pack_floats(M, K) * sizeof *pack);
    for (size_t i = 0; i < (size_t)M * K; i++)
        x[i] = frand(&seed);
    for (size_t i = 0; i < (size_t)N * K; i++)
        w[i] = frand(&seed) * 0.05f;
    for (int i = 0; i < N; i++)
        b[i] = frand(&seed);
    /* OpenBLAS, columns [N / 2, N). */
    for (int r = 0; r < M; r++)
        memcpy(ref + (size_t)r * N + N / 2, b + N / 2,
               (size_t)(N - N / 2) * sizeof *ref);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N - N / 2, K,
                1.0f, x, K, w + (size_t)(N / 2) * K, K, 1.0f, ref + N / 2, N);
    vit__sgemm_op op = {.w = {w}, .b = {b}, .out = {out}, .seg = N, .ld = N};
    int runs = 0;
    for (int isa = CPU_ISA_GENERIC; isa <= CPU_ISA_AVX512; isa++) {
        if (!use_path(isa))
            continue;
        char what[64];
        snprintf(what, sizeof what, "sgemm %s vs OpenBLAS", path_name[isa]);
        vit__sgemm(&op, x, M, K, N / 2, N, pack);
        ck_assert(tu_rel_diff(what, out, ref, (size_t)M * N) < 1e-5);
        if (runs++ == 0)
            memcpy(first, out, (size_t)M * N * sizeof *out);
        ck_assert_msg(memcmp(out, first, (size_t)M * N * sizeof *out) == 0,
                      "%s: M %d N %d K %d differs from the plain C path",
                      path_name[isa], M, N, K);
    }
    vit__sgemm_force_isa(-1);
    free(x);
    free(w);
    free(b);
    free(out);
    free(first);
    free(ref);
    free(pack);
}
END_TEST

/* The encoder's ways of splitting a layer between threads: rows (a thread
 * per block of rows), columns (every thread all rows, its share of the
 * weights), and grids of both, on vit_rect (61 tokens) with four images,
 * the fourth a copy of the first: 244 rows make two row groups of 122 for
 * 2, 4 and 6 threads, none for 3 and 5. On each path: within the fixture's
 * tolerance of transformers; the fourth image the bits of the first (its
 * place in the batch changes nothing); one image alone the same bits again;
 * and every thread count and path the bits of one thread's run. */
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
    float *first = malloc(4 * per * sizeof *first);
    memcpy(four, px.data, 3 * img * sizeof *four);
    memcpy(four + 3 * img, px.data, img * sizeof *four);
    memcpy(ref, hid.data, 3 * per * sizeof *ref);
    memcpy(ref + 3 * per, hid.data, per * sizeof *ref);
    /* The bits to match: one thread, the CPU table's path. */
    vit_options one = opt;
    one.threads = 1;
    vit_state *st1;
    vit_model *m1 = tu_load_fixture("vit_rect", &one, &st1);
    vit__forward_hidden(st1, four, 4);
    memcpy(first, vit__state_hidden(st1), 4 * per * sizeof *first);
    vit_state_free(st1);
    vit_model_free(m1);
    for (int isa = CPU_ISA_GENERIC; isa <= CPU_ISA_AVX512; isa++) {
        if (!use_path(isa))
            continue;
        vit__forward_hidden(st, four, 4);
        const float *h = vit__state_hidden(st);
        char what[64];
        snprintf(what, sizeof what, "vit_rect, %d threads, %s", threads[_i],
                 path_name[isa]);
        ck_assert(tu_rel_diff(what, h, ref, 4 * per) < 1e-4);
        ck_assert_msg(memcmp(h + 3 * per, h, per * sizeof *h) == 0,
                      "%s: the copy of image 0 differs", what);
        ck_assert_msg(memcmp(h, first, 4 * per * sizeof *h) == 0,
                      "%s: differs from one thread's", what);
        vit__forward_hidden(st, four, 1);
        ck_assert_msg(memcmp(vit__state_hidden(st), first,
                             per * sizeof *h) == 0,
                      "%s: image 0 alone differs", what);
    }
    vit__sgemm_force_isa(-1);
    free(four);
    free(ref);
    free(first);
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
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, sgemm_matches_double, 0,
                        (int)(sizeof shapes / sizeof *shapes));
    tcase_add_loop_test(tc, sgemm_bf16_weights, 0,
                        (int)(sizeof shapes / sizeof *shapes));
    tcase_add_loop_test(tc, sgemm_rows_independent, 0,
                        3 * (int)(sizeof row_cases / sizeof *row_cases));
    tcase_add_loop_test(tc, sgemm_model_shapes, 0, 12);
    tcase_add_loop_test(tc, encoder_splits_match_reference, 0, 6);
    suite_add_tcase(s, tc);
    return s;
}
