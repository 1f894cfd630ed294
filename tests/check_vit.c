/*
 * The ViT models against transformers: each fixture directory is a tiny
 * checkpoint saved by tests/gen_fixtures.py with the reference's last
 * hidden state, logits and embedding for a fixed pixel tensor. Covers
 * qkv_bias on and off, F32 / F16 / BF16 weights, a sharded checkpoint,
 * ViTModel with a pooler, and a non-square single-channel image size; DeiT
 * (distilled, plain, the base model) and DINOv2 (with and without
 * registers, as classifiers and base models, at sizes other than the one
 * their positions were trained at; SwiGLU). The
 * contract: within 1e-4 relative (max abs diff / max abs value).
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "vit/vit_impl.h"

#define TOL 1e-4

static const char *models[] = {
    "vit_tiny",     "vit_nobias_f16", "vit_bf16",       "vit_sharded",
    "vit_model",    "vit_rect",       "deit_teacher",   "deit_cls",
    "deit_model",   "dinov2_model",   "dinov2_cls",     "dinov2_reg",
    "dinov2_reg_cls", "dinov2_swiglu"};

/* Runs with max_batch 2 over 3 images, so batching and the chunking of a
 * larger call are both exercised. */
START_TEST(matches_reference)
{
    const char *name = models[_i];
    char dir[512], what[128];
    snprintf(dir, sizeof dir, FIXTURES "/%s", name);
    vit_options opt = vit_options_default();
    opt.max_batch = 2;
    vit_model *m;
    vit_error err;
    ck_assert_msg(vit_model_load(dir, &opt, &m, &err) == VIT_OK, "%s",
                  err.msg);
    vit_model_info info;
    vit_model_get_info(m, &info);
    vit_state *s;
    ck_assert_int_eq(vit_state_new(m, &s, &err), VIT_OK);

    vit_array px = tu_fixture(name, "ref_pixels.npy");
    int n = (int)px.shape[0];
    ck_assert_int_eq(px.shape[1], info.channels);
    ck_assert_int_eq(px.shape[2], info.image_h);
    ck_assert_int_eq(px.shape[3], info.image_w);

    /* The last hidden state, two images in one forward. */
    vit_array hid = tu_fixture(name, "ref_hidden.npy");
    size_t per = (size_t)hid.shape[1] * hid.shape[2];
    vit__forward_hidden(s, px.data, 2);
    snprintf(what, sizeof what, "%s last_hidden_state", name);
    ck_assert(tu_rel_diff(what, vit__state_hidden(s), hid.data, 2 * per) <
              TOL);

    /* The embedding, through the public call. */
    vit_array emb = tu_fixture(name, "ref_embed.npy");
    ck_assert_int_eq(emb.shape[1], info.embed_dim);
    float *e = malloc((size_t)n * info.embed_dim * sizeof *e);
    ck_assert_int_eq(vit_embed_pixels(s, px.data, n, e, &err), VIT_OK);
    snprintf(what, sizeof what, "%s embedding", name);
    ck_assert(tu_rel_diff(what, e, emb.data, (size_t)n * info.embed_dim) <
              TOL);
    free(e);

    if (info.arch == VIT_ARCH_VIT_CLASSIFIER) {
        vit_array lg = tu_fixture(name, "ref_logits.npy");
        int L = info.num_labels;
        ck_assert_int_eq(lg.shape[1], L);
        float *logits = malloc((size_t)n * L * sizeof *logits);
        vit_prediction *top = malloc((size_t)n * 3 * sizeof *top);
        ck_assert_int_eq(
            vit_classify_pixels(s, px.data, n, 3, top, logits, &err), VIT_OK);
        snprintf(what, sizeof what, "%s logits", name);
        ck_assert(tu_rel_diff(what, logits, lg.data, (size_t)n * L) < TOL);
        for (int i = 0; i < n; i++) {
            /* The top label is the reference's argmax, and scores are
             * sorted probabilities. */
            int best = 0;
            for (int j = 1; j < L; j++)
                if (lg.data[i * L + j] > lg.data[i * L + best])
                    best = j;
            ck_assert_int_eq(top[i * 3].id, best);
            ck_assert_str_eq(top[i * 3].label, vit_model_label(m, best));
            ck_assert(top[i * 3].score >= top[i * 3 + 1].score);
            ck_assert(top[i * 3].score > 0 && top[i * 3].score <= 1);
        }
        free(logits);
        free(top);
        vit_array_free(&lg);
    } else {
        vit_prediction top[1];
        ck_assert_int_eq(vit_classify_pixels(s, px.data, 1, 1, top, NULL, &err),
                         VIT_E_NO_HEAD);
    }
    vit_array_free(&px);
    vit_array_free(&hid);
    vit_array_free(&emb);
    vit_state_free(s);
    vit_model_free(m);
}
END_TEST

START_TEST(reads_config)
{
    vit_model *m;
    vit_error err;
    ck_assert_int_eq(vit_model_load(FIXTURES "/vit_tiny", NULL, &m, &err),
                     VIT_OK);
    vit_model_info info;
    vit_model_get_info(m, &info);
    ck_assert_int_eq(info.arch, VIT_ARCH_VIT_CLASSIFIER);
    ck_assert_str_eq(info.architecture, "ViTForImageClassification");
    ck_assert(info.has_vision && !info.has_text && !info.has_tokenizer);
    ck_assert_int_eq(info.num_labels, 10);
    ck_assert_int_eq(info.hidden_size, 32);
    ck_assert_int_eq(info.num_layers, 2);
    ck_assert_int_eq(info.num_heads, 4);
    ck_assert_int_eq(info.patch_size, 8);
    ck_assert_int_eq(info.image_h, 32);
    ck_assert_str_eq(vit_model_label(m, 9), "nine, the \"last\" digit");
    ck_assert_ptr_null(vit_model_label(m, 10));
    ck_assert_ptr_null(vit_model_label(m, -1));
    vit_model_free(m);
    vit_model_free(NULL);
    vit_state_free(NULL);

    ck_assert_int_eq(vit_model_load(FIXTURES "/vit_rect", NULL, &m, &err),
                     VIT_OK);
    vit_model_get_info(m, &info);
    ck_assert_int_eq(info.image_h, 24);
    ck_assert_int_eq(info.image_w, 40);
    ck_assert_int_eq(info.channels, 1);
    ck_assert_str_eq(vit_model_label(m, 4), "LABEL_4");
    vit_model_free(m);
}
END_TEST

/* Each kernel against a naive loop written from its definition. */
START_TEST(linear_matches_naive)
{
    enum { M = 5, N = 7, K = 3 };
    float in[M * K], w[N * K], b[N], out[M * N], ref[M * N];
    for (int i = 0; i < M * K; i++)
        in[i] = (float)((i * 37) % 11) / 7.0f - 0.5f;
    for (int i = 0; i < N * K; i++)
        w[i] = (float)((i * 53) % 13) / 9.0f - 0.6f;
    for (int i = 0; i < N; i++)
        b[i] = (float)i / 3.0f;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double acc = b[j];
            for (int k = 0; k < K; k++)
                acc += (double)in[i * K + k] * w[j * K + k];
            ref[i * N + j] = (float)acc;
        }
    vit__linear(out, in, w, b, M, N, K);
    ck_assert(tu_rel_diff("linear vs naive", out, ref, M * N) < 1e-6);
}
END_TEST

START_TEST(causal_attention_matches_naive)
{
    enum { B = 2, T = 4, D = 6, H = 2, dh = 3 };
    float q[B * T * D], k[B * T * D], v[B * T * D], out[B * T * D],
        ref[B * T * D];
    float *work = malloc(vit__attention_floats(T, dh) * sizeof *work);
    ck_assert_ptr_nonnull(work);
    for (int i = 0; i < B * T * D; i++) {
        q[i] = (float)((i * 17) % 23) / 11.0f - 1.0f;
        k[i] = (float)((i * 29) % 19) / 9.0f - 1.0f;
        v[i] = (float)((i * 7) % 13) / 5.0f - 1.0f;
    }
    for (int causal = 0; causal < 2; causal++) {
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++)
                for (int i = 0; i < T; i++) {
                    double s[T], mx = -1e30, sum = 0;
                    int last = causal ? i : T - 1;
                    for (int j = 0; j <= last; j++) {
                        s[j] = 0;
                        for (int d = 0; d < dh; d++)
                            s[j] += (double)q[(b * T + i) * D + h * dh + d] *
                                    k[(b * T + j) * D + h * dh + d];
                        s[j] /= sqrt((double)dh);
                        mx = s[j] > mx ? s[j] : mx;
                    }
                    for (int j = 0; j <= last; j++)
                        sum += s[j] = exp(s[j] - mx);
                    for (int d = 0; d < dh; d++) {
                        double acc = 0;
                        for (int j = 0; j <= last; j++)
                            acc += s[j] / sum * v[(b * T + j) * D + h * dh + d];
                        ref[(b * T + i) * D + h * dh + d] = (float)acc;
                    }
                }
        vit__attention(out, q, k, v, work, B, T, D, H, causal, NULL);
        ck_assert(tu_rel_diff(causal ? "causal attention vs naive"
                                     : "attention vs naive",
                              out, ref, B * T * D) < 1e-6);
    }
    free(work);
}
END_TEST

/* The vectorized activations against their definitions in double, over a
 * sweep wide enough to reach both saturated tails. */
START_TEST(activations_match_definitions)
{
    enum { N = 4001 };
    static float x[N], y[N];
    for (int i = 0; i < N; i++)
        x[i] = -20.0f + 0.01f * i;
    for (int a = VIT_ACT_GELU; a <= VIT_ACT_TANH; a++) {
        memcpy(y, x, sizeof x);
        vit__activation(y, N, (vit__act)a);
        double worst = 0;
        for (int i = 0; i < N; i++) {
            double r = tu_act_ref(a, x[i]);
            /* Error relative to the value's scale, floored at 1. */
            double e = fabs(y[i] - r) / fmax(1.0, fabs(r));
            worst = fmax(worst, e);
        }
        printf("activation %d vs definition: max error %.3g\n", a, worst);
        ck_assert_msg(worst < 1e-6, "activation %d: error %g", a, worst);
    }
    ck_assert_int_eq(vit__act_parse("gelu"), VIT_ACT_GELU);
    ck_assert_int_eq(vit__act_parse("quick_gelu"), VIT_ACT_QUICK_GELU);
    ck_assert_int_eq(vit__act_parse("gelu_new"), VIT_ACT_GELU_TANH);
    ck_assert_int_eq(vit__act_parse("mish!"), -1);
}
END_TEST

START_TEST(softmax_matches_naive)
{
    /* Rows with large values, masked (-inf) entries and 1..40 columns:
     * masked entries must come out exactly 0. */
    float x[40], ref[40];
    for (int cols = 1; cols <= 40; cols++) {
        for (int c = 0; c < cols; c++)
            x[c] = (c % 3 == 2 && c > 0) ? -INFINITY
                                         : 50.0f * sinf((float)(c * cols));
        double mx = -1e300, sum = 0;
        for (int c = 0; c < cols; c++)
            mx = fmax(mx, x[c]);
        for (int c = 0; c < cols; c++)
            sum += exp(x[c] - mx);
        for (int c = 0; c < cols; c++)
            ref[c] = (float)(exp(x[c] - mx) / sum);
        vit__softmax(x, 1, cols);
        for (int c = 0; c < cols; c++) {
            ck_assert_msg(fabsf(x[c] - ref[c]) < 1e-6, "cols %d c %d: %g vs %g",
                          cols, c, x[c], ref[c]);
            if (ref[c] == 0)
                ck_assert(x[c] == 0);
        }
    }
}
END_TEST

START_TEST(layernorm_matches_naive)
{
    enum { M = 3, C = 8 };
    float in[M * C], w[C], b[C], out[M * C], ref[M * C];
    for (int i = 0; i < M * C; i++)
        in[i] = 100.0f + (float)((i * 31) % 17) / 3.0f; /* large mean */
    for (int c = 0; c < C; c++)
        w[c] = 1.0f + 0.1f * c, b[c] = -0.05f * c;
    for (int i = 0; i < M; i++) {
        double mean = 0, var = 0;
        for (int c = 0; c < C; c++)
            mean += in[i * C + c];
        mean /= C;
        for (int c = 0; c < C; c++)
            var += (in[i * C + c] - mean) * (in[i * C + c] - mean);
        var /= C;
        for (int c = 0; c < C; c++)
            ref[i * C + c] =
                (float)((in[i * C + c] - mean) / sqrt(var + 1e-5) * w[c] + b[c]);
    }
    vit__layernorm(out, in, w, b, M, C, 1e-5f);
    ck_assert(tu_rel_diff("layernorm vs naive", out, ref, M * C) < 1e-5);
}
END_TEST

Suite *vit_suite(void)
{
    Suite *s = suite_create("vit");
    TCase *tc = tcase_create("reference");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, matches_reference, 0,
                        sizeof models / sizeof *models);
    tcase_add_test(tc, reads_config);
    suite_add_tcase(s, tc);
    TCase *ops = tcase_create("ops");
    tcase_add_test(ops, linear_matches_naive);
    tcase_add_test(ops, causal_attention_matches_naive);
    tcase_add_test(ops, activations_match_definitions);
    tcase_add_test(ops, softmax_matches_naive);
    tcase_add_test(ops, layernorm_matches_naive);
    suite_add_tcase(s, ops);
    return s;
}
