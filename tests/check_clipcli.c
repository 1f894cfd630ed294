/*
 * The CLIP and SigLIP commands end to end, against transformers: `vit
 * embed` (texts and image files, normalized or not, JSONL and .npy), `vit
 * match` and `vit classify --labels` on tests/fixtures/clip_tok, a tiny
 * CLIPModel with the real CLIP vocabulary, and siglip_tok(_mask), a tiny
 * SiglipModel with a SentencePiece tokenizer, whose reference outputs were
 * made from the same strings and files by the reference's tokenizers,
 * image processors and models (tests/gen_fixtures.py). Also the library's vit_embed_texts on those
 * strings, and the errors a wrong model or wrong options give.
 */
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "vit/vit.h"

#define TOK FIXTURES "/clip_tok"
#define TOL 1e-4

/* The end-to-end fixtures the loop tests run on: CLIP; SigLIP with its
 * tokenizer as the hub has it (no attention mask: the padding is
 * attended) and as transformers 5 saves it (masked); SigLIP 2's
 * fixed-resolution form (a SiglipModel with Gemma's tokenizer). */
static const char *const toks[] = {TOK, FIXTURES "/siglip_tok",
                                   FIXTURES "/siglip_tok_mask",
                                   FIXTURES "/siglip2_tok",
                                   /* open_clip's (tests/check_openclip.c) */
                                   FIXTURES "/openclip_b32",
                                   FIXTURES "/openclip_quick",
                                   FIXTURES "/openclip_rect"};
#define N_TOKS (int)(sizeof toks / sizeof *toks)
static const char *tok = TOK; /* the one the running test uses */

static json_t *inputs(void)
{
    char path[256];
    snprintf(path, sizeof path, "%s/ref_inputs.json", tok);
    json_t *j = json_load_file(path, 0, NULL);
    ck_assert_ptr_nonnull(j);
    return j;
}

static vit_array ref(const char *file)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", tok, file);
    vit_array a;
    vit_error err;
    ck_assert_msg(vit_npy_read(path, &a, &err) == VIT_OK, "%s", err.msg);
    return a;
}

/* Collects `key` (an array of numbers, or of objects whose `sub` is a
 * number) from each JSONL line of `out` into a new array of rows x cols. */
static float *jsonl_floats(const char *out, const char *key, const char *sub,
                           int rows, int cols)
{
    float *v = calloc((size_t)rows * cols, sizeof *v);
    const char *p = out;
    for (int r = 0; r < rows; r++) {
        const char *nl = strchr(p, '\n');
        ck_assert_ptr_nonnull(nl);
        json_t *o = json_loadb(p, (size_t)(nl - p), 0, NULL);
        ck_assert_ptr_nonnull(o);
        json_t *a = json_object_get(o, key);
        ck_assert_int_eq(json_array_size(a), cols);
        for (int c = 0; c < cols; c++) {
            json_t *e = json_array_get(a, (size_t)c);
            v[r * cols + c] =
                (float)json_number_value(sub ? json_object_get(e, sub) : e);
        }
        json_decref(o);
        p = nl + 1;
    }
    ck_assert_str_eq(p, "");
    return v;
}

static void normalize_rows(float *v, int rows, int cols)
{
    for (int r = 0; r < rows; r++) {
        double ss = 0;
        for (int c = 0; c < cols; c++)
            ss += (double)v[r * cols + c] * v[r * cols + c];
        for (int c = 0; c < cols; c++)
            v[r * cols + c] = (float)(v[r * cols + c] / sqrt(ss));
    }
}

/* Appends every string of the JSON array to args[*n...]. */
static void add_all(const char **args, int *n, json_t *a, const char *flag)
{
    for (size_t i = 0; i < json_array_size(a); i++) {
        if (flag)
            args[(*n)++] = flag;
        args[(*n)++] = json_string_value(json_array_get(a, i));
    }
    args[*n] = NULL;
}

/* argv: "embed", "--model", TOK, extra..., then --text for each string. */
static void embed_texts_cli(tu_run_result *r, json_t *texts, const char *extra)
{
    const char *args[64] = {"embed", "--model", tok};
    int n = 3;
    if (extra)
        args[n++] = extra;
    for (size_t i = 0; i < json_array_size(texts); i++) {
        args[n++] = "--text";
        args[n++] = json_string_value(json_array_get(texts, i));
    }
    args[n] = NULL;
    tu_run_argv(r, args);
}

START_TEST(embed_texts_match_reference)
{
    tok = toks[_i];
    json_t *in = inputs();
    json_t *texts = json_object_get(in, "texts");
    int n = (int)json_array_size(texts);
    vit_array want = ref("ref_str_text_embeds.npy");
    int E = (int)want.shape[1];
    tu_run_result r;
    embed_texts_cli(&r, texts, "--no-normalize");
    ck_assert_msg(r.code == 0, "%s", r.err);
    float *got = jsonl_floats(r.out, "embedding", NULL, n, E);
    ck_assert(tu_rel_diff("vit embed --text --no-normalize", got, want.data,
                          (size_t)n * E) < TOL);
    free(got);
    tu_run_free(&r);

    /* Normalized by default: the reference rows scaled to unit length. */
    embed_texts_cli(&r, texts, NULL);
    ck_assert_int_eq(r.code, 0);
    got = jsonl_floats(r.out, "embedding", NULL, n, E);
    normalize_rows(want.data, n, E);
    ck_assert(tu_rel_diff("vit embed --text", got, want.data, (size_t)n * E) <
              TOL);
    free(got);
    tu_run_free(&r);
    vit_array_free(&want);
    json_decref(in);
}
END_TEST

START_TEST(library_embeds_strings)
{
    tok = toks[_i];
    json_t *in = inputs();
    json_t *texts = json_object_get(in, "texts");
    int n = (int)json_array_size(texts);
    const char *s[16];
    for (int i = 0; i < n; i++)
        s[i] = json_string_value(json_array_get(texts, i));
    vit_array want = ref("ref_str_text_embeds.npy");
    vit_options opt = vit_options_default();
    opt.max_batch = 4; /* the strings span two chunks */
    vit_model *m;
    vit_state *st;
    vit_error err;
    ck_assert_int_eq(vit_model_load(tok, &opt, &m, &err), VIT_OK);
    ck_assert_int_eq(vit_state_new(m, &st, &err), VIT_OK);
    vit_model_info info;
    vit_model_get_info(m, &info);
    ck_assert(info.has_vision && info.has_text && info.has_tokenizer);
    float *got = malloc((size_t)n * want.shape[1] * sizeof *got);
    ck_assert_msg(vit_embed_texts(st, s, n, got, &err) == VIT_OK, "%s",
                  err.msg);
    ck_assert(tu_rel_diff("vit_embed_texts", got, want.data,
                          (size_t)n * want.shape[1]) < TOL);
    free(got);
    vit_state_free(st);
    vit_model_free(m);
    vit_array_free(&want);
    json_decref(in);
}
END_TEST

/* The image files include a JPEG stored sideways (EXIF orientation 6) and
 * an RGBA PNG: the reference opened them with transformers' load_image. */
/* The library's image entry point on the same files, in chunks of 2. */
START_TEST(library_embeds_image_files)
{
    tok = toks[_i];
    json_t *in = inputs();
    json_t *imgs = json_object_get(in, "images");
    int n = (int)json_array_size(imgs);
    vit_array want = ref("ref_file_image_embeds.npy");
    vit_options opt = vit_options_default();
    opt.max_batch = 2;
    vit_model *m;
    vit_state *st;
    vit_error err;
    ck_assert_int_eq(vit_model_load(tok, &opt, &m, &err), VIT_OK);
    ck_assert_int_eq(vit_state_new(m, &st, &err), VIT_OK);
    vit_image im[8];
    for (int i = 0; i < n; i++)
        ck_assert_msg(vit_image_read(json_string_value(json_array_get(imgs, i)),
                                     vit_model_options(m), &im[i],
                                     &err) == VIT_OK,
                      "%s", err.msg);
    float *got = malloc((size_t)n * want.shape[1] * sizeof *got);
    ck_assert_msg(vit_embed_images(st, im, n, got, &err) == VIT_OK, "%s",
                  err.msg);
    ck_assert(tu_rel_diff("vit_embed_images", got, want.data,
                          (size_t)n * want.shape[1]) < TOL);
    for (int i = 0; i < n; i++)
        vit_image_free(&im[i]);
    free(got);
    vit_state_free(st);
    vit_model_free(m);
    vit_array_free(&want);
    json_decref(in);
}
END_TEST

START_TEST(embed_images_jsonl_and_npy)
{
    tok = TOK;
    json_t *in = inputs();
    json_t *imgs = json_object_get(in, "images");
    int n = (int)json_array_size(imgs);
    vit_array want = ref("ref_file_image_embeds.npy");
    int E = (int)want.shape[1];
    tu_run_result r;
    const char *args[32] = {"embed", "--model", TOK, "--no-normalize"};
    int na = 4;
    add_all(args, &na, imgs, "--image");
    tu_run_argv(&r, args);
    ck_assert_msg(r.code == 0, "%s", r.err);
    float *got = jsonl_floats(r.out, "embedding", NULL, n, E);
    ck_assert(tu_rel_diff("vit embed --image --no-normalize", got, want.data,
                          (size_t)n * E) < TOL);
    ck_assert_ptr_nonnull(strstr(r.out, "{\"path\": \"tests/fixtures/cli/"));
    free(got);
    tu_run_free(&r);

    /* Without the EXIF turn the sideways JPEG is another picture. */
    const char *sideways = json_string_value(json_array_get(imgs, 2));
    tu_run(&r, "embed", "--model", TOK, "--no-normalize", "--no-exif-rotate",
           sideways, NULL);
    ck_assert_int_eq(r.code, 0);
    got = jsonl_floats(r.out, "embedding", NULL, 1, E);
    double d = tu_rel_diff("--no-exif-rotate vs the turned reference", got,
                           want.data + 2 * E, (size_t)E);
    ck_assert_msg(d > 1e-2, "--no-exif-rotate changed nothing (%g)", d);
    free(got);
    tu_run_free(&r);

    /* --fast-decode lets libjpeg shrink the 256x192 photo before the
     * 32-pixel resize: not the reference's pixels, but near them. */
    const char *photo = json_string_value(json_array_get(imgs, 4));
    ck_assert_ptr_nonnull(strstr(photo, "photo.jpg"));
    tu_run(&r, "embed", "--model", TOK, "--no-normalize", "--fast-decode",
           photo, NULL);
    ck_assert_int_eq(r.code, 0);
    got = jsonl_floats(r.out, "embedding", NULL, 1, E);
    d = tu_rel_diff("--fast-decode vs the reference", got, want.data + 4 * E,
                    (size_t)E);
    ck_assert_msg(d > 1e-6 && d < 0.2, "--fast-decode differs by %g", d);
    free(got);
    tu_run_free(&r);

    /* .npy: one (n, E) array of the normalized rows. */
    char *dir = tu_tmpdir(), out[512];
    snprintf(out, sizeof out, "%s/e.npy", dir);
    na = 0;
    const char *a2[32] = {"embed", "--model", TOK, "--format", "npy", "--out",
                          out};
    na = 7;
    add_all(a2, &na, imgs, NULL);
    tu_run_argv(&r, a2);
    ck_assert_msg(r.code == 0, "%s", r.err);
    ck_assert_str_eq(r.out, "");
    vit_array npy;
    vit_error err;
    ck_assert_int_eq(vit_npy_read(out, &npy, &err), VIT_OK);
    ck_assert_int_eq(npy.ndim, 2);
    ck_assert_int_eq(npy.shape[0], n);
    ck_assert_int_eq(npy.shape[1], E);
    normalize_rows(want.data, n, E);
    ck_assert(tu_rel_diff("vit embed --format npy", npy.data, want.data,
                          (size_t)n * E) < TOL);
    vit_array_free(&npy);
    tu_run_free(&r);
    tu_rmrf(dir);
    free(dir);
    vit_array_free(&want);
    json_decref(in);
}
END_TEST

/* Probabilities: CLIP's softmax over the texts, SigLIP's sigmoid of each
 * pair (logits_per_image.softmax(-1) and .sigmoid()). */
START_TEST(match_matches_reference)
{
    tok = toks[_i];
    int siglip = strstr(tok, "siglip") != NULL;
    json_t *in = inputs();
    json_t *texts = json_object_get(in, "match_texts");
    json_t *imgs = json_object_get(in, "images");
    int k = (int)json_array_size(texts);
    const char *args[32] = {"match", "--model", tok, "--format", "jsonl"};
    int n = 5;
    for (int i = 0; i < k; i++) {
        args[n++] = "--text";
        args[n++] = json_string_value(json_array_get(texts, (size_t)i));
    }
    add_all(args, &n, imgs, NULL);
    int ni = (int)json_array_size(imgs);
    tu_run_result r;
    tu_run_argv(&r, args);
    ck_assert_msg(r.code == 0, "%s", r.err);
    vit_array want = ref("ref_match_logits.npy");
    float *logits = jsonl_floats(r.out, "scores", "logit", ni, k);
    float *probs = jsonl_floats(r.out, "scores", "score", ni, k);
    ck_assert(tu_rel_diff("vit match logits_per_image", logits, want.data,
                          (size_t)ni * k) < TOL);
    for (int i = 0; i < ni; i++) {
        /* logits_per_image.softmax(-1), from the reference logits */
        double mx = -1e30, sum = 0;
        for (int j = 0; j < k; j++)
            mx = fmax(mx, want.data[i * k + j]);
        for (int j = 0; j < k; j++)
            sum += exp(want.data[i * k + j] - mx);
        for (int j = 0; j < k; j++) {
            double l = want.data[i * k + j];
            ck_assert_float_eq_tol(probs[i * k + j],
                                   siglip ? 1 / (1 + exp(-l))
                                          : exp(l - mx) / sum,
                                   1e-5);
        }
    }
    free(logits);
    free(probs);
    tu_run_free(&r);
    vit_array_free(&want);
    json_decref(in);
}
END_TEST

START_TEST(zero_shot_classify)
{
    tok = toks[_i];
    json_t *in = inputs();
    json_t *labels = json_object_get(in, "labels");
    json_t *imgs = json_object_get(in, "images");
    int L = (int)json_array_size(labels);
    char *dir = tu_tmpdir(), file[512];
    snprintf(file, sizeof file, "%s/labels.txt", dir);
    FILE *f = fopen(file, "w");
    for (int i = 0; i < L; i++) /* CRLF and a blank line are tolerated */
        fprintf(f, "%s\r\n\n", json_string_value(json_array_get(labels, i)));
    fclose(f);
    tu_run_result r;
    const char *args[32] = {
        "classify", "--model", tok, "--labels", file, "--template",
        json_string_value(json_object_get(in, "template")), "--format",
        "jsonl", "--logits", "-k", "3"};
    int na = 12;
    add_all(args, &na, imgs, NULL);
    int ni = (int)json_array_size(imgs);
    tu_run_argv(&r, args);
    ck_assert_msg(r.code == 0, "%s", r.err);
    vit_array want = ref("ref_zeroshot_logits.npy");
    float *got = jsonl_floats(r.out, "logits", NULL, ni, L);
    ck_assert(tu_rel_diff("vit classify --labels logits", got, want.data,
                          (size_t)ni * L) < TOL);
    /* The top label is the reference's argmax, named from the file. */
    const char *line = r.out;
    for (int i = 0; i < ni; i++) {
        int best = 0;
        for (int j = 1; j < L; j++)
            if (want.data[i * L + j] > want.data[i * L + best])
                best = j;
        char expect[128];
        snprintf(expect, sizeof expect, "\"labels\": [{\"id\": %d, \"label\": "
                 "\"%s\"", best,
                 json_string_value(json_array_get(labels, (size_t)best)));
        ck_assert_msg(strstr(line, expect), "line %d lacks %s", i, expect);
        line = strchr(line, '\n') + 1;
    }
    free(got);
    tu_run_free(&r);
    tu_rmrf(dir);
    free(dir);
    vit_array_free(&want);
    json_decref(in);
}
END_TEST

START_TEST(wrong_models_and_options)
{
    tu_run_result r;
    /* A vision-only CLIP has no text tower. */
    tu_run(&r, "embed", "--model", FIXTURES "/clip_vision", "--text", "a cat",
           NULL);
    ck_assert_int_eq(r.code, 1);
    ck_assert_ptr_nonnull(strstr(r.err, "no text tower"));
    tu_run_free(&r);
    /* Matching needs a CLIPModel. */
    tu_run(&r, "match", "--model", FIXTURES "/vit_tiny", "--text", "a cat",
           "tests/fixtures/cli/noise.png", NULL);
    ck_assert_int_eq(r.code, 1);
    ck_assert_ptr_nonnull(strstr(r.err, "CLIPModel"));
    tu_run_free(&r);
    /* A CLIP model has no labels of its own. */
    tu_run(&r, "classify", "--model", TOK, "tests/fixtures/cli/noise.png",
           NULL);
    ck_assert_int_eq(r.code, 1);
    ck_assert_ptr_nonnull(strstr(r.err, "--labels"));
    tu_run_free(&r);
    /* Usage errors exit 2. */
    const char *const bad[][8] = {
        {"embed", "--model", TOK, NULL},
        {"embed", "--model", TOK, "--text", "a", "x.png", NULL},
        {"embed", "--model", TOK, "--format", "csv", "--text", "a", NULL},
        {"match", "--model", TOK, "x.png", NULL},
        {"match", "--model", TOK, "--text", "a", NULL},
        {"classify", "--model", TOK, "--template", "no slot", "x.png", NULL},
        {"classify", "--model", TOK, "--template", "a {}", "x.png", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        tu_run_argv(&r, bad[i]);
        ck_assert_msg(r.code == 2, "case %zu: exit %d, %s", i, r.code, r.err);
        ck_assert_ptr_nonnull(strstr(r.err, "usage: vit"));
        tu_run_free(&r);
    }
    /* One bad image among good ones: reported, the rest embedded. */
    tu_run(&r, "embed", "--model", TOK, "tests/fixtures/cli/noise.png",
           FIXTURES "/clip_tok/config.json", NULL);
    ck_assert_int_eq(r.code, 1);
    ck_assert_ptr_nonnull(strstr(r.err, "vit: " FIXTURES "/clip_tok/config.json"));
    ck_assert_ptr_nonnull(strstr(r.out, "noise.png"));
    tu_run_free(&r);
}
END_TEST

Suite *clipcli_suite(void)
{
    Suite *s = suite_create("clipcli");
    TCase *tc = tcase_create("commands");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, embed_texts_match_reference, 0, N_TOKS);
    tcase_add_loop_test(tc, library_embeds_strings, 0, N_TOKS);
    tcase_add_loop_test(tc, library_embeds_image_files, 0, N_TOKS);
    tcase_add_test(tc, embed_images_jsonl_and_npy);
    tcase_add_loop_test(tc, match_matches_reference, 0, N_TOKS);
    tcase_add_loop_test(tc, zero_shot_classify, 0, N_TOKS);
    tcase_add_test(tc, wrong_models_and_options);
    suite_add_tcase(s, tc);
    return s;
}
