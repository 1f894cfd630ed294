/*
 * The benchmark harness: loads a model directory, times the forward pass
 * at several batch sizes and reports ms per image, images/s and achieved
 * GFLOP/s next to the OpenBLAS sgemm peak measured in the same run at the
 * model's own largest matrix shape (the MLP's first GEMM), so the result
 * reads as a ratio that survives a noisy, shared machine.
 *
 *     build/vit_bench MODEL_DIR [BATCH...]      (default batches 1 8 32)
 *
 * VIT_THREADS=N sets the threads (default: one per CPU); the sgemm peak is
 * measured with OpenBLAS on as many threads.
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vit/vit.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Multiply-adds of one image's forward, counted as 2 flops each. */
static double forward_flops(const vit_model_info *in)
{
    double T = (double)(in->image_h / in->patch_size) *
                   (in->image_w / in->patch_size) + 1,
           D = in->hidden_size, NP = T - 1,
           cpp = (double)in->channels * in->patch_size * in->patch_size;
    double per_layer = 2 * T * D * D * 4     /* q, k, v, out projections */
                       + 2 * T * T * D * 2   /* scores and weighted sum */
                       + 2 * T * D * in->mlp_size * 2; /* MLP */
    return 2 * NP * cpp * D + in->num_layers * per_layer +
           2 * D * (in->num_labels ? in->num_labels : in->embed_dim);
}

/* Best-of-3 sgemm GFLOP/s at (M, N, K), OpenBLAS running `threads`
 * threads (the library sets it to one while its own pool runs; the peak is
 * the machine's, all cores). */
static double sgemm_peak(int M, int N, int K, int threads)
{
    openblas_set_num_threads(threads);
    float *a = malloc((size_t)M * K * sizeof *a),
          *b = malloc((size_t)N * K * sizeof *b),
          *c = malloc((size_t)M * N * sizeof *c);
    for (size_t i = 0; i < (size_t)M * K; i++)
        a[i] = (float)(i % 7) * 0.1f;
    for (size_t i = 0; i < (size_t)N * K; i++)
        b[i] = (float)(i % 5) * 0.1f;
    double best = 0;
    for (int r = 0; r < 4; r++) {
        double t = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, a,
                    K, b, K, 0.0f, c, N);
        t = now() - t;
        double g = 2.0 * M * N * K / t / 1e9;
        if (r > 0 && g > best) /* the first run warms caches and threads */
            best = g;
    }
    free(a), free(b), free(c);
    openblas_set_num_threads(1);
    return best;
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0) {
        fprintf(stderr, "usage: vit_bench MODEL_DIR [BATCH...]\n");
        return 2;
    }
    int batches[16] = {1, 8, 32}, nb = 3;
    if (argc > 2) {
        nb = 0;
        for (int i = 2; i < argc && nb < 16; i++)
            batches[nb++] = atoi(argv[i]) > 0 ? atoi(argv[i]) : 1;
    }
    int maxb = 1;
    for (int i = 0; i < nb; i++)
        maxb = batches[i] > maxb ? batches[i] : maxb;

    vit_options opt = vit_options_default();
    opt.max_batch = maxb;
    const char *te = getenv("VIT_THREADS");
    opt.threads = te ? atoi(te) : 0;
    int threads = opt.threads > 0 ? opt.threads : openblas_get_num_procs();
    vit_error err;
    vit_model *m;
    double t0 = now();
    if (vit_model_load(argv[1], &opt, &m, &err) != VIT_OK) {
        fprintf(stderr, "vit_bench: %s\n", err.msg);
        return 1;
    }
    double t_load = now() - t0;
    vit_model_info in;
    vit_model_get_info(m, &in);
    vit_state *s;
    if (vit_state_new(m, &s, &err) != VIT_OK) {
        fprintf(stderr, "vit_bench: %s\n", err.msg);
        return 1;
    }
    size_t per = (size_t)in.channels * in.image_h * in.image_w;
    float *px = malloc((size_t)maxb * per * sizeof *px);
    for (size_t i = 0; i < (size_t)maxb * per; i++)
        px[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
    int dim = in.num_labels ? in.num_labels : in.embed_dim;
    float *out = malloc((size_t)maxb * dim * sizeof *out);
    vit_status (*run)(vit_state *, const float *, int, float *, vit_error *) =
        vit_embed_pixels;
    /* Classifiers run their head; logits only, no top-k sorting. */
    int classifier = in.num_labels > 0;
    t0 = now();
    vit_status st = classifier ? vit_classify_pixels(s, px, 1, 0, NULL, out, &err)
                               : run(s, px, 1, out, &err);
    double t_first = now() - t0 + t_load;
    if (st != VIT_OK) {
        fprintf(stderr, "vit_bench: %s\n", err.msg);
        return 1;
    }

    int T = (in.image_h / in.patch_size) * (in.image_w / in.patch_size) + 1;
    int mlp = in.mlp_size;
    double flops = forward_flops(&in);
    printf("model %s (%s): %dx%d, hidden %d, %d layers, %.2f GFLOP/image\n",
           argv[1], in.architecture, in.image_h, in.image_w, in.hidden_size,
           in.num_layers, flops / 1e9);
    printf("load %.1f ms, load to first result %.1f ms, %d threads\n",
           t_load * 1e3, t_first * 1e3, threads);
    printf("%6s %10s %10s %10s %12s %8s\n", "batch", "ms/image", "images/s",
           "GFLOP/s", "sgemm peak", "ratio");
    for (int i = 0; i < nb; i++) {
        int B = batches[i];
        double peak = sgemm_peak(B * T, mlp, in.hidden_size, threads);
        int reps = 0;
        double t = now(), el;
        do {
            if (classifier)
                vit_classify_pixels(s, px, B, 0, NULL, out, &err);
            else
                run(s, px, B, out, &err);
            reps++;
            el = now() - t;
        } while (el < 2.0 && reps < 1000);
        double per_img = el / reps / B;
        double g = flops / per_img / 1e9;
        printf("%6d %10.2f %10.1f %10.1f %12.1f %7.0f%%\n", B, per_img * 1e3,
               1.0 / per_img, g, peak, 100 * g / peak);
    }
    free(px);
    free(out);
    vit_state_free(s);
    vit_model_free(m);
    return 0;
}
