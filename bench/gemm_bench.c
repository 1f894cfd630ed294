/*
 * The float32 GEMM against the machine's own limit: on one thread, the
 * fused multiply-add peak of the CPU path that runs (vit_fma_peak_gflops:
 * independent vector FMAs, nothing else; VIT_ISA caps the path), then
 * vit's GEMM (vit/sgemm.c), the same with the weights in bfloat16 (what
 * --precision bf16 runs where oneDNN does not: widened a block at a time
 * inside the product) and OpenBLAS sgemm at the encoder's shapes, all four
 * in turns, each the best of its rounds, so that the ratios survive a
 * shared machine. Shapes: ViT-B/16's q/k/v, fc1 and fc2 for one image
 * (197 rows) and for a thread's half of a batch of 8 (788 rows); or the
 * M K N given on the command line.
 *
 *     build/gemm_bench [--rounds R] [M K N]
 */
#include "vit/vit_impl.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void openblas_set_num_threads(int);

static float *filled(size_t n, unsigned seed)
{
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; p && i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (float)((seed >> 8) & 0xffff) / 65536.0f - 0.5f;
    }
    return p;
}

/* Seconds of the best of `reps` runs of one product. */
static double best_of(int reps, int ours, const vit__sgemm_op *op,
                      const float *x, const float *w, float *out, int M,
                      int K, int N, float *pack)
{
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t = vit__now();
        if (ours)
            vit__sgemm(op, x, M, K, 0, N, pack);
        else
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K,
                        1.0f, x, K, w, K, 0.0f, out, N);
        t = vit__now() - t;
        best = t < best ? t : best;
    }
    return best;
}

static void shape(int M, int K, int N, int rounds)
{
    float *x = filled((size_t)M * K, 1), *w = filled((size_t)N * K, 2);
    float *b = filled((size_t)N, 3), *out = malloc((size_t)M * N * 4);
    float *pack = malloc(vit__sgemm_pack_floats(M, K) * sizeof *pack);
    vit__bf16 *w16 = malloc((size_t)N * K * sizeof *w16);
    if (!x || !w || !b || !out || !pack || !w16) {
        fprintf(stderr, "gemm_bench: out of memory\n");
        exit(1);
    }
    vit__bf16_round(w16, w, (size_t)N * K);
    vit__sgemm_op op = {.w = {w}, .b = {b}, .out = {out}, .seg = N, .ld = N};
    vit__sgemm_op op16 = op;
    op16.w16[0] = w16;
    double peak = 0, ours = 1e30, o16 = 1e30, blas = 1e30;
    double flop = 2.0 * M * K * N;
    best_of(1, 1, &op, x, w, out, M, K, N, pack); /* warm-up */
    best_of(1, 1, &op16, x, w, out, M, K, N, pack);
    best_of(1, 0, &op, x, w, out, M, K, N, pack);
    for (int r = 0; r < rounds; r++) {
        double p = vit_fma_peak_gflops(1), t[3];
        /* Rotate which GEMM goes first. */
        for (int i = 0; i < 3; i++) {
            int g = (i + r) % 3;
            t[g] = best_of(3, g < 2, g == 1 ? &op16 : &op, x, w, out, M, K,
                           N, pack);
        }
        peak = p > peak ? p : peak;
        ours = t[0] < ours ? t[0] : ours;
        o16 = t[1] < o16 ? t[1] : o16;
        blas = t[2] < blas ? t[2] : blas;
    }
    printf("%5d %5d %5d %10.1f %9.1f %5.1f%% %9.1f %5.1f%% %9.1f %5.1f%%\n",
           M, K, N, peak, flop / ours / 1e9, 100 * flop / ours / 1e9 / peak,
           flop / o16 / 1e9, 100 * flop / o16 / 1e9 / peak,
           flop / blas / 1e9, 100 * flop / blas / 1e9 / peak);
    fflush(stdout);
    free(x);
    free(w);
    free(b);
    free(out);
    free(pack);
    free(w16);
}

int main(int argc, char **argv)
{
    int rounds = 5, a = 1;
    if (a + 1 < argc && strcmp(argv[a], "--rounds") == 0) {
        rounds = atoi(argv[a + 1]);
        a += 2;
    }
    if (rounds < 1 || (argc - a != 0 && argc - a != 3)) {
        fprintf(stderr, "usage: gemm_bench [--rounds R] [M K N]\n");
        return 2;
    }
    openblas_set_num_threads(1);
    char cpu[256];
    vit_cpu_path(NULL, cpu, sizeof cpu, NULL);
    printf("one thread; cpu: %s\n", cpu);
    printf("%5s %5s %5s %10s %9s %6s %9s %6s %9s %6s\n", "M", "K", "N",
           "FMA peak", "vit", "", "vit bf16w", "", "OpenBLAS", "");
    if (argc - a == 3) {
        shape(atoi(argv[a]), atoi(argv[a + 1]), atoi(argv[a + 2]), rounds);
        return 0;
    }
    static const int shapes[][3] = {{197, 768, 2304}, {197, 768, 3072},
                                    {197, 3072, 768}, {788, 768, 2304},
                                    {788, 768, 3072}, {788, 3072, 768}};
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
        shape(shapes[i][0], shapes[i][1], shapes[i][2], rounds);
    return 0;
}
