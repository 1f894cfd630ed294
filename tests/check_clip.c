/*
 * CLIP and SigLIP against transformers: tiny CLIPModel checkpoints
 * (quick_gelu and gelu, both end-of-text pooling conventions, F32 and F16,
 * projection size unlike either hidden size), SiglipModel (F32 and BF16)
 * and the separate vision / text towers of each, saved
 * by tests/gen_fixtures.py with the reference's get_image_features,
 * get_text_features and logits_per_image for fixed pixels and token ids.
 * The contract: within 1e-4 relative (max abs diff / max abs value).
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "vit/vit_impl.h"

#define TOL 1e-4

static vit_model *load(const char *name, int max_batch, vit_state **s)
{
    vit_options opt = vit_options_default();
    opt.max_batch = max_batch;
    return tu_load_fixture(name, &opt, s);
}

/* The ids fixture is float32 (exact for ids below 2^24). */
static int32_t *ids_of(const vit_array *a)
{
    size_t n = (size_t)a->shape[0] * a->shape[1];
    int32_t *ids = malloc(n * sizeof *ids);
    for (size_t i = 0; i < n; i++)
        ids[i] = (int32_t)a->data[i];
    return ids;
}

static void check_image_side(const char *name, vit_state *s, const float *px,
                             int n, float *out)
{
    vit_array want = tu_fixture(name, "ref_image_embeds.npy");
    vit_error err;
    ck_assert_int_eq(vit_embed_pixels(s, px, n, out, &err), VIT_OK);
    char what[128];
    snprintf(what, sizeof what, "%s image embeds", name);
    ck_assert(tu_rel_diff(what, out, want.data,
                          (size_t)n * want.shape[1]) < TOL);
    vit_array_free(&want);
}

/* lens: SigLIP's fixtures carry the tokenizer's attention mask, as the
 * number of tokens before the padding of each text. */
static void check_text_side(const char *name, vit_state *s, float *out,
                            int *n_out, int lens)
{
    vit_array ida = tu_fixture(name, "ref_ids.npy");
    vit_array want = tu_fixture(name, "ref_text_embeds.npy");
    int32_t *ids = ids_of(&ida);
    int n = (int)ida.shape[0], T = (int)ida.shape[1];
    int *len = lens ? tu_fixture_lens(name) : NULL;
    ck_assert(!lens || len);
    vit_error err;
    ck_assert_msg(vit__embed_ids(s, ids, len, n, T, out, &err) == VIT_OK,
                  "%s", err.msg);
    free(len);
    char what[128];
    snprintf(what, sizeof what, "%s text embeds", name);
    ck_assert(tu_rel_diff(what, out, want.data,
                          (size_t)n * want.shape[1]) < TOL);
    *n_out = n;
    free(ids);
    vit_array_free(&ida);
    vit_array_free(&want);
}

/* Both sides of a CLIP or SigLIP fixture (E wide) and their match: the
 * reference's logits_per_image, and as probabilities their softmax over
 * the texts (CLIP) or each one's sigmoid (SigLIP). */
static void check_pair(const char *name, vit_model *m, vit_state *s, int E,
                       int siglip)
{
    vit_array px = tu_fixture(name, "ref_pixels.npy");
    int ni = (int)px.shape[0], nt;
    float *img = malloc((size_t)ni * E * sizeof *img);
    float *txt = malloc(16 * (size_t)E * sizeof *txt);
    check_image_side(name, s, px.data, ni, img);
    check_text_side(name, s, txt, &nt, siglip);

    vit_array lpi = tu_fixture(name, "ref_logits_per_image.npy");
    float *logits = malloc((size_t)ni * nt * sizeof *logits);
    float *probs = malloc((size_t)ni * nt * sizeof *probs);
    vit_error err;
    ck_assert_int_eq(vit_match(m, img, ni, txt, nt, logits, probs, &err),
                     VIT_OK);
    char what[128];
    snprintf(what, sizeof what, "%s logits_per_image", name);
    ck_assert(tu_rel_diff(what, logits, lpi.data, (size_t)ni * nt) < TOL);
    for (int i = 0; i < ni; i++) {
        double mx = -1e30, sum = 0;
        for (int j = 0; j < nt; j++)
            mx = fmax(mx, lpi.data[i * nt + j]);
        for (int j = 0; j < nt; j++)
            sum += exp(lpi.data[i * nt + j] - mx);
        for (int j = 0; j < nt; j++) {
            double l = lpi.data[i * nt + j];
            ck_assert_float_eq_tol(probs[i * nt + j],
                                   siglip ? 1 / (1 + exp(-l))
                                          : exp(l - mx) / sum,
                                   1e-5);
        }
    }
    free(img), free(txt), free(logits), free(probs);
    vit_array_free(&px);
    vit_array_free(&lpi);
}

static const char *full[] = {"clip_tiny", "clip_gelu_f16"};

START_TEST(clip_model_matches_reference)
{
    const char *name = full[_i];
    vit_state *s;
    vit_model *m = load(name, 2, &s); /* 2: chunks of a larger call */
    vit_model_info info;
    vit_model_get_info(m, &info);
    ck_assert_int_eq(info.arch, VIT_ARCH_CLIP);
    ck_assert(info.has_vision && info.has_text);
    ck_assert_int_eq(info.embed_dim, 24);
    /* The F32 fixture stores logit_scale_init_value exactly; the F16 one
     * a rounding of it, which logits_per_image below checks. */
    if (strcmp(name, "clip_tiny") == 0)
        ck_assert_float_eq_tol(info.logit_scale, expf(2.6592f), 1e-4);

    check_pair(name, m, s, 24, 0);
    vit_state_free(s);
    vit_model_free(m);
}
END_TEST

static const char *siglips[] = {"siglip_tiny", "siglip_bf16"};

/* SigLIP: the vision tower's attention-pooling head, the text tower with
 * its padding masked and pooled at the last position, and scores as
 * sigmoid(exp(logit_scale) cos + logit_bias), each pair on its own. */
START_TEST(siglip_matches_reference)
{
    const char *name = siglips[_i];
    vit_state *s;
    vit_model *m = load(name, 2, &s);
    vit_model_info info;
    vit_model_get_info(m, &info);
    ck_assert_int_eq(info.arch, VIT_ARCH_SIGLIP);
    ck_assert_str_eq(info.architecture, "SiglipModel");
    ck_assert(info.has_vision && info.has_text);
    ck_assert_int_eq(info.embed_dim, 48);
    check_pair(name, m, s, 48, 1);
    if (strcmp(name, "siglip_tiny") == 0) {
        ck_assert_float_eq_tol(info.logit_scale, expf(2.3f), 1e-4);
        ck_assert_float_eq_tol(vit_model_logit_bias(m), -1.5f, 1e-6);
    }
    vit_state_free(s);
    vit_model_free(m);

    /* A padded text is not the same text unpadded: without the mask the
     * padding would reach the pooled position. */
    if (_i == 0) {
        m = load("siglip_text", 2, &s);
        vit_array ida = tu_fixture("siglip_text", "ref_ids.npy");
        vit_array want = tu_fixture("siglip_text", "ref_text_embeds.npy");
        int32_t *ids = ids_of(&ida);
        int T = (int)ida.shape[1];
        float out[48];
        vit_error err;
        /* Text 2 of the fixture is shorter than T. */
        ck_assert_int_eq(vit__embed_ids(s, ids + 2 * T, NULL, 1, T, out, &err),
                         VIT_OK);
        double d = 0;
        for (int k = 0; k < 48; k++)
            d = fmax(d, fabs(out[k] - want.data[2 * 48 + k]));
        ck_assert_msg(d > 1e-3, "the padding mask changes nothing (%g)", d);
        free(ids);
        vit_array_free(&ida);
        vit_array_free(&want);
        vit_state_free(s);
        vit_model_free(m);
    }
}
END_TEST

START_TEST(siglip_towers)
{
    vit_state *s;
    vit_model *m = load("siglip_vision", 8, &s);
    vit_model_info info;
    vit_model_get_info(m, &info);
    ck_assert_int_eq(info.arch, VIT_ARCH_SIGLIP_VISION);
    ck_assert(info.has_vision && !info.has_text);
    vit_array px = tu_fixture("siglip_vision", "ref_pixels.npy");
    float out[16 * 48];
    check_image_side("siglip_vision", s, px.data, (int)px.shape[0], out);
    vit_array_free(&px);
    vit_error err;
    ck_assert_int_eq(vit_match(m, out, 1, out, 1, NULL, NULL, &err),
                     VIT_E_NO_HEAD);
    vit_state_free(s);
    vit_model_free(m);

    m = load("siglip_text", 3, &s);
    vit_model_get_info(m, &info);
    ck_assert_int_eq(info.arch, VIT_ARCH_SIGLIP_TEXT);
    ck_assert(!info.has_vision && info.has_text);
    int nt;
    check_text_side("siglip_text", s, out, &nt, 1);
    vit_state_free(s);
    vit_model_free(m);
}
END_TEST

START_TEST(single_towers)
{
    vit_state *s;
    vit_model *m = load("clip_vision", 8, &s);
    vit_model_info info;
    vit_model_get_info(m, &info);
    ck_assert_int_eq(info.arch, VIT_ARCH_CLIP_VISION);
    ck_assert(info.has_vision && !info.has_text);
    vit_array px = tu_fixture("clip_vision", "ref_pixels.npy");
    float out[16 * 24];
    check_image_side("clip_vision", s, px.data, (int)px.shape[0], out);
    /* Asking a vision-only model for text is a clear error. */
    vit_error err;
    const char *t[] = {"a photo"};
    ck_assert_int_eq(vit_embed_texts(s, t, 1, out, &err), VIT_E_NO_HEAD);
    ck_assert_ptr_nonnull(strstr(err.msg, "no text tower"));
    int32_t ids[3] = {1, 2, 3};
    ck_assert_int_eq(vit__embed_ids(s, ids, NULL, 1, 3, out, &err), VIT_E_NO_HEAD);
    vit_array_free(&px);
    vit_state_free(s);
    vit_model_free(m);

    m = load("clip_text", 3, &s);
    vit_model_get_info(m, &info);
    ck_assert_int_eq(info.arch, VIT_ARCH_CLIP_TEXT);
    ck_assert(!info.has_vision && info.has_text && !info.has_tokenizer);
    int nt;
    check_text_side("clip_text", s, out, &nt, 0);
    float pixels[3 * 32 * 32] = {0};
    ck_assert_int_eq(vit_embed_pixels(s, pixels, 1, out, &err), VIT_E_NO_HEAD);
    ck_assert_ptr_nonnull(strstr(err.msg, "no vision tower"));
    /* No tokenizer files in this fixture: the message says what is
     * missing. */
    ck_assert_int_eq(vit_embed_texts(s, t, 1, out, &err), VIT_E_CONFIG);
    ck_assert_ptr_nonnull(strstr(err.msg, "no tokenizer"));
    vit_state_free(s);
    vit_model_free(m);
}
END_TEST

START_TEST(pooling_conventions)
{
    /* eos_token_id == 2 pools at the argmax id; any other value at the
     * first occurrence of eos_token_id (or 0 when absent). */
    vit__text t = {.eos_id = 2};
    int32_t a[] = {49406, 320, 49407, 49407, 1};
    ck_assert_int_eq(vit__text_pool_index(&t, a, 5), 2);
    t.eos_id = 7;
    int32_t b[] = {5, 9, 7, 300, 7};
    ck_assert_int_eq(vit__text_pool_index(&t, b, 5), 2);
    int32_t c[] = {5, 9, 8};
    ck_assert_int_eq(vit__text_pool_index(&t, c, 3), 0);
}
END_TEST

START_TEST(bad_token_ids)
{
    vit_state *s;
    vit_model *m = load("clip_tiny", 2, &s);
    float out[24];
    vit_error err;
    int32_t ids[] = {998, 5, 1000};
    ck_assert_int_eq(vit__embed_ids(s, ids, NULL, 1, 3, out, &err), VIT_E_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "outside the model's vocabulary"));
    int32_t many[40] = {0};
    ck_assert_int_eq(vit__embed_ids(s, many, NULL, 1, 40, out, &err), VIT_E_ARG);
    vit_state_free(s);
    vit_model_free(m);
}
END_TEST

START_TEST(zeroshot_needs_clip)
{
    vit_state *s;
    vit_model *m = load("vit_tiny", 2, &s);
    vit_zeroshot *z;
    vit_error err;
    const char *labels[] = {"cat", "dog"};
    ck_assert_int_eq(vit_zeroshot_new(s, labels, 2, NULL, &z, &err),
                     VIT_E_NO_HEAD);
    float e[32] = {1};
    ck_assert_int_eq(vit_match(m, e, 1, e, 1, NULL, NULL, &err),
                     VIT_E_NO_HEAD);
    vit_state_free(s);
    vit_model_free(m);
}
END_TEST

Suite *clip_suite(void)
{
    Suite *s = suite_create("clip");
    TCase *tc = tcase_create("reference");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, clip_model_matches_reference, 0,
                        sizeof full / sizeof *full);
    tcase_add_test(tc, single_towers);
    tcase_add_loop_test(tc, siglip_matches_reference, 0,
                        sizeof siglips / sizeof *siglips);
    tcase_add_test(tc, siglip_towers);
    tcase_add_test(tc, pooling_conventions);
    tcase_add_test(tc, bad_token_ids);
    tcase_add_test(tc, zeroshot_needs_clip);
    suite_add_tcase(s, tc);
    return s;
}
