/*
 * Checkpoints in the layouts of the model hub, from image files to
 * outputs, against transformers (tests/gen_fixtures_hub.py): every form of
 * preprocessor_config.json vit reads (integer sizes as openai/clip-* and
 * the laion CLIPs ship them, the legacy FeatureExtractor names, every
 * size dict, scalar means, no rescale, ...) on non-square photos, through
 * both of transformers' image processors (Pillow's and torchvision's);
 * and the configurations transformers refuses, which vit refuses too.
 */
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/testutil.h"
#include "vit/vit.h"
#include "vit/vit_impl.h"

#define HUB FIXTURES "/hub"

static json_t *manifest(void)
{
    json_error_t je;
    json_t *m = json_load_file(HUB "/manifest.json", 0, &je);
    ck_assert_msg(m, "%s/manifest.json: %s", HUB, je.text);
    return m;
}

/* How many cases of a kind; 1 when the manifest cannot be read, so that
 * the case fails saying why instead of the suite running none. */
static int count(const char *key)
{
    json_t *m = json_load_file(HUB "/manifest.json", 0, NULL);
    int n = m ? (int)json_array_size(json_object_get(m, key)) : 1;
    json_decref(m);
    return n;
}

/* The images of the manifest, decoded as `m` decodes them; fails the test
 * when one cannot be. */
static vit_image *read_photos(json_t *man, const vit_model *m, int *n)
{
    json_t *ph = json_object_get(man, "photos");
    *n = (int)json_array_size(ph);
    vit_image *imgs = calloc((size_t)*n, sizeof *imgs);
    ck_assert_ptr_nonnull(imgs);
    for (int i = 0; i < *n; i++) {
        char path[512];
        snprintf(path, sizeof path, HUB "/%s",
                 json_string_value(json_array_get(ph, (size_t)i)));
        vit_error err;
        ck_assert_msg(vit_image_read(path, vit_model_options(m), &imgs[i],
                                     &err) == VIT_OK,
                      "%s: %s", path, err.msg);
    }
    return imgs;
}

static void free_photos(vit_image *imgs, int n)
{
    for (int i = 0; i < n; i++)
        vit_image_free(&imgs[i]);
    free(imgs);
}

/* Our pixels against the reference's: the worst difference in levels (one
 * step of the 8-bit input after rescale and normalize) and the share of
 * identical values are printed; every value must be identical, on both
 * backends. */
static void compare_pixels(const char *what, const vit_model *m,
                           const float *got, const float *ref, size_t n)
{
    const img_preprocess_cfg *cfg = &vit__model_processor(m)->cfg;
    vit_model_info info;
    vit_model_get_info(m, &info);
    size_t plane = (size_t)info.image_h * info.image_w, same = 0;
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (int)((i / plane) % 3);
        double step = (cfg->do_rescale ? cfg->rescale_factor : 1.0) /
                      (cfg->do_normalize ? cfg->std[c] : 1.0);
        double d = fabs((double)got[i] - ref[i]);
        if (d <= 1e-6 * fmax(1.0, fabs(ref[i])))
            same++;
        if (d / step > worst)
            worst = d / step;
    }
    double frac = (double)same / (double)n;
    printf("%-44s pixels identical %.4f%%, worst %.3f level\n", what,
           100.0 * frac, worst);
    ck_assert_msg(same == n,
                  "%s: %.4f%% of the pixels are identical, the worst %.3f "
                  "levels off",
                  what, 100.0 * frac, worst);
}

static void check_form(int i, vit_preprocess_backend b)
{
    const char *bname = b == VIT_PREPROCESS_TORCHVISION ? "torchvision" : "pil";
    json_t *man = manifest();
    json_t *f = json_array_get(json_object_get(man, "forms"), (size_t)i);
    const char *name = json_string_value(json_object_get(f, "name"));
    json_t *ref = json_object_get(f, bname);
    char dir[512], what[128];
    snprintf(dir, sizeof dir, HUB "/%s", name);
    snprintf(what, sizeof what, "hub %s %s", name, bname);
    vit_options opt = vit_options_default();
    opt.preprocess = b;
    opt.threads = 1;
    vit_model *m = NULL;
    vit_error err = {{0}};
    vit_status st = vit_model_load(dir, &opt, &m, &err);
    if (json_object_get(ref, "error")) {
        /* transformers fails on it: so must vit, when loading or when
         * preprocessing. */
        if (st == VIT_OK) {
            int n;
            vit_image *imgs = read_photos(man, m, &n);
            vit_model_info info;
            vit_model_get_info(m, &info);
            float *px = malloc(sizeof *px * 3 * info.image_h * info.image_w);
            st = vit_preprocess(m, imgs, 1, px, &err);
            free(px);
            free_photos(imgs, n);
        }
        printf("%-44s refused as transformers does: %s\n", what, err.msg);
        ck_assert_msg(st != VIT_OK, "%s: transformers refuses (%s), vit not",
                      what,
                      json_string_value(json_object_get(ref, "error")));
        vit_model_free(m);
        json_decref(man);
        return;
    }
    ck_assert_msg(st == VIT_OK, "%s: %s", dir, err.msg);
    vit_state *s;
    ck_assert(vit_state_new(m, &s, &err) == VIT_OK);
    vit_model_info info;
    vit_model_get_info(m, &info);
    int n;
    vit_image *imgs = read_photos(man, m, &n);
    char sub[256];
    snprintf(sub, sizeof sub, "hub/%s", name);
    vit_array rp = tu_fixture(sub, json_string_value(json_object_get(ref, "pixels")));
    vit_array ro = tu_fixture(sub, json_string_value(json_object_get(ref, "out")));
    size_t per = (size_t)3 * info.image_h * info.image_w;
    ck_assert_int_eq(rp.shape[0], n);
    ck_assert_int_eq(rp.shape[1] * rp.shape[2] * rp.shape[3], (int64_t)per);
    float *px = malloc(sizeof *px * per * (size_t)n);
    ck_assert_ptr_nonnull(px);
    ck_assert_msg(vit_preprocess(m, imgs, n, px, &err) == VIT_OK, "%s: %s",
                  what, err.msg);
    compare_pixels(what, m, px, rp.data, per * (size_t)n);
    /* The outputs of our own pixels, from the files end to end. */
    int dim = (int)ro.shape[1];
    float *out = malloc(sizeof *out * (size_t)dim * (size_t)n);
    ck_assert_ptr_nonnull(out);
    if (info.num_labels > 0 && info.embed_dim != dim) {
        ck_assert_int_eq(info.num_labels, dim);
        vit_prediction *top = malloc(sizeof *top * (size_t)n);
        ck_assert_ptr_nonnull(top);
        st = vit_classify_pixels(s, px, n, 1, top, out, &err);
        free(top);
    } else {
        ck_assert_int_eq(info.embed_dim, dim);
        st = vit_embed_pixels(s, px, n, out, &err);
    }
    ck_assert_msg(st == VIT_OK, "%s: %s", what, err.msg);
    ck_assert(tu_rel_diff(what, out, ro.data, (size_t)dim * (size_t)n) < 1e-4);
    free(out);
    free(px);
    vit_array_free(&rp);
    vit_array_free(&ro);
    free_photos(imgs, n);
    vit_state_free(s);
    vit_model_free(m);
    json_decref(man);
}

START_TEST(form_pil) { check_form(_i, VIT_PREPROCESS_PIL); }
END_TEST

START_TEST(form_torchvision) { check_form(_i, VIT_PREPROCESS_TORCHVISION); }
END_TEST

/* What transformers refuses, vit refuses with a message saying why. */
START_TEST(refused)
{
    json_t *man = manifest();
    json_t *r = json_array_get(json_object_get(man, "refused"), (size_t)_i);
    char dir[512];
    snprintf(dir, sizeof dir, HUB "/%s",
             json_string_value(json_object_get(r, "name")));
    const char *want = json_string_value(json_object_get(r, "message"));
    vit_model *m = NULL;
    vit_error err = {{0}};
    vit_status st = vit_model_load(dir, NULL, &m, &err);
    if (st == VIT_OK) {
        int n;
        vit_image *imgs = read_photos(man, m, &n);
        vit_model_info info;
        vit_model_get_info(m, &info);
        float *px = malloc(sizeof *px * 3 * info.image_h * info.image_w);
        st = vit_preprocess(m, imgs, 1, px, &err);
        free(px);
        free_photos(imgs, n);
    }
    printf("hub %-40s %s\n", dir, err.msg);
    ck_assert_msg(st != VIT_OK, "%s: accepted", dir);
    ck_assert_msg(strstr(err.msg, want), "%s: \"%s\" does not say \"%s\"",
                  dir, err.msg, want);
    vit_model_free(m);
    json_decref(man);
}
END_TEST

/* The command, end to end, on both backends: `vit embed --no-normalize`
 * gives get_image_features of the files. */
START_TEST(embed_command)
{
    json_t *man = manifest();
    json_t *ph = json_object_get(man, "photos");
    char *tmp = tu_tmpdir();
    for (int tv = 0; tv < 2; tv++) {
        const char *args[64];
        char out[512], paths[16][512];
        int k = 0;
        snprintf(out, sizeof out, "%s/e.npy", tmp);
        const char *head[] = {"embed", "--model", HUB "/clip_openai",
                              "--preprocess", tv ? "torchvision" : "pil",
                              "--no-normalize", "--format", "npy", "--out",
                              out, "--image"};
        for (size_t j = 0; j < sizeof head / sizeof *head; j++)
            args[k++] = head[j];
        for (size_t j = 0; j < json_array_size(ph) && j < 16; j++) {
            snprintf(paths[j], sizeof paths[j], HUB "/%s",
                     json_string_value(json_array_get(ph, j)));
            args[k++] = paths[j];
        }
        args[k] = NULL;
        tu_run_result r;
        tu_run_argv(&r, args);
        ck_assert_msg(r.code == 0, "exit %d: %s", r.code, r.err);
        tu_run_free(&r);
        vit_array got, ref = tu_fixture("hub/clip_openai",
                                        tv ? "ref_out_torchvision.npy"
                                           : "ref_out_pil.npy");
        vit_error err;
        ck_assert_msg(vit_npy_read(out, &got, &err) == VIT_OK, "%s", err.msg);
        ck_assert_int_eq(got.shape[0] * got.shape[1],
                         ref.shape[0] * ref.shape[1]);
        ck_assert(tu_rel_diff(tv ? "hub vit embed --preprocess torchvision"
                                 : "hub vit embed --preprocess pil",
                              got.data, ref.data,
                              (size_t)(ref.shape[0] * ref.shape[1])) < 1e-4);
        vit_array_free(&got);
        vit_array_free(&ref);
    }
    tu_rmrf(tmp);
    free(tmp);
    json_decref(man);
}
END_TEST

/* A directory without preprocessor_config.json: the command names the
 * image and says what is missing, once. */
START_TEST(no_processor_command)
{
    tu_run_result r;
    tu_run(&r, "classify", "--model", HUB "/refused/no_processor",
           HUB "/photos/tiny.png", NULL);
    ck_assert_int_eq(r.code, 1);
    ck_assert_msg(strstr(r.err, "no preprocessor_config.json"), "%s", r.err);
    tu_run_free(&r);
}
END_TEST

/* The messages a new user meets: a ViTModel asked to classify points to
 * vit embed; an unsupported architecture names its directory once. */
START_TEST(messages)
{
    tu_run_result r;
    tu_run(&r, "classify", "--model", FIXTURES "/vit_model",
           HUB "/photos/tiny.png", NULL);
    ck_assert_int_eq(r.code, 1);
    ck_assert_msg(strstr(r.err, "vit embed"), "%s", r.err);
    tu_run_free(&r);

    char *tmp = tu_tmpdir(), path[512];
    snprintf(path, sizeof path, "%s/config.json", tmp);
    const char cfg[] = "{\"architectures\": [\"BeitForImageClassification\"],"
                       " \"model_type\": \"beit\"}";
    ck_assert_int_eq(tu_write(path, cfg, sizeof cfg - 1), 0);
    tu_run(&r, "classify", "--model", tmp, HUB "/photos/tiny.png", NULL);
    ck_assert_int_eq(r.code, 1);
    const char *first = strstr(r.err, tmp);
    ck_assert_msg(first && !strstr(first + strlen(tmp), tmp),
                  "the directory is not named once: %s", r.err);
    ck_assert_msg(strstr(r.err, "BeitForImageClassification (model_type "
                         "\"beit\") is not supported; vit runs ViTModel"),
                  "%s", r.err);
    ck_assert_msg(strstr(r.err, "Dinov2Model"), "%s", r.err);
    tu_run_free(&r);
    tu_rmrf(tmp);
    free(tmp);
}
END_TEST

Suite *hub_suite(void)
{
    Suite *s = suite_create("hub");
    TCase *tc = tcase_create("forms");
    tcase_set_timeout(tc, 60);
    int nf = count("forms"), nr = count("refused");
    tcase_add_loop_test(tc, form_pil, 0, nf);
    tcase_add_loop_test(tc, form_torchvision, 0, nf);
    tcase_add_loop_test(tc, refused, 0, nr);
    tcase_add_test(tc, embed_command);
    tcase_add_test(tc, no_processor_command);
    tcase_add_test(tc, messages);
    suite_add_tcase(s, tc);
    return s;
}
