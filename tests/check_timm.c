/*
 * timm's Vision Transformers as the hub holds them, from image files to
 * outputs, against timm (tests/gen_fixtures_timm.py): each tiny
 * checkpoint saved by timm's save_for_hf, its photos through the eval
 * transform pretrained_cfg resolves (pixels identical), its logits and
 * labels, its pooled pre-logits features (`vit embed`), through the
 * library and the command; and what vit refuses, with a message.
 */
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "index/index.h"
#include "tests/testutil.h"
#include "vit/vit.h"

#define TIMM FIXTURES "/timm"
#define PHOTOS FIXTURES "/hub/photos"

static json_t *manifest(void)
{
    json_error_t je;
    json_t *m = json_load_file(TIMM "/manifest.json", 0, &je);
    ck_assert_msg(m, "%s/manifest.json: %s", TIMM, je.text);
    return m;
}

/* The fixtures; 1 when the manifest cannot be read, so that the case
 * fails saying why instead of the suite running none. */
static int count(void)
{
    json_t *m = json_load_file(TIMM "/manifest.json", 0, NULL);
    int n = m ? (int)json_array_size(json_object_get(m, "fixtures")) : 1;
    json_decref(m);
    return n;
}

START_TEST(fixture_matches_timm)
{
    json_t *man = manifest();
    json_t *f = json_array_get(json_object_get(man, "fixtures"), (size_t)_i);
    const char *name = json_string_value(json_object_get(f, "name"));
    int n = (int)json_integer_value(json_object_get(f, "photos"));
    /* A fixture may share another's reference files ("refs"). */
    const char *refs = json_string_value(json_object_get(f, "refs"));
    char dir[512], sub[256];
    snprintf(dir, sizeof dir, TIMM "/%s", name);
    snprintf(sub, sizeof sub, "timm/%s", refs ? refs : name);
    vit_options opt = vit_options_default();
    opt.threads = 2;
    opt.max_batch = 3; /* more than one batch */
    vit_model *m = NULL;
    vit_error err = {{0}};
    ck_assert_msg(vit_model_load(dir, &opt, &m, &err) == VIT_OK, "%s: %s",
                  dir, err.msg);
    vit_state *s;
    ck_assert(vit_state_new(m, &s, &err) == VIT_OK);
    vit_model_info info;
    vit_model_get_info(m, &info);
    ck_assert_str_eq(info.architecture,
                     json_string_value(json_object_get(f, "architecture")));

    /* The photos opened as timm's users open them. */
    vit_image *imgs = calloc((size_t)n, sizeof *imgs);
    ck_assert_ptr_nonnull(imgs);
    for (int i = 0; i < n; i++) {
        char path[512];
        snprintf(path, sizeof path, PHOTOS "/%s",
                 json_string_value(json_array_get(
                     json_object_get(man, "photos"), (size_t)i)));
        ck_assert_msg(vit_image_read(path, &opt, &imgs[i], &err) == VIT_OK,
                      "%s: %s", path, err.msg);
    }
    size_t per = (size_t)3 * info.image_h * info.image_w;
    vit_array rp = tu_fixture(sub, "ref_pixels.npy");
    ck_assert_int_eq(rp.shape[0], n);
    ck_assert_int_eq(rp.shape[2], info.image_h);
    ck_assert_int_eq(rp.shape[3], info.image_w);
    float *px = malloc(sizeof *px * per * (size_t)n);
    ck_assert_ptr_nonnull(px);
    ck_assert_msg(vit_preprocess(m, imgs, n, px, &err) == VIT_OK, "%s: %s",
                  name, err.msg);
    size_t same = 0;
    for (size_t i = 0; i < per * (size_t)n; i++)
        same += px[i] == rp.data[i];
    printf("timm %-14s pixels identical %zu of %zu\n", name, same,
           per * (size_t)n);
    ck_assert_msg(same == per * (size_t)n, "%s: %zu of %zu pixels differ",
                  name, per * (size_t)n - same, per * (size_t)n);

    /* The pooled features, from our pixels. */
    vit_array re = tu_fixture(sub, "ref_embed.npy");
    ck_assert_int_eq(re.shape[1], info.embed_dim);
    float *out = malloc(sizeof *out * (size_t)n * info.embed_dim);
    ck_assert_ptr_nonnull(out);
    ck_assert_msg(vit_embed_pixels(s, px, n, out, &err) == VIT_OK, "%s: %s",
                  name, err.msg);
    char what[128];
    snprintf(what, sizeof what, "timm %s features", name);
    ck_assert(tu_rel_diff(what, out, re.data, (size_t)n * info.embed_dim) <
              1e-4);

    /* The logits and labels of a classifier. */
    if (info.num_labels) {
        vit_array rl = tu_fixture(sub, "ref_logits.npy");
        int L = info.num_labels;
        ck_assert_int_eq(rl.shape[1], L);
        float *lg = malloc(sizeof *lg * (size_t)n * L);
        vit_prediction *top = malloc(sizeof *top * (size_t)n);
        ck_assert(lg && top);
        ck_assert(vit_classify_pixels(s, px, n, 1, top, lg, &err) == VIT_OK);
        snprintf(what, sizeof what, "timm %s logits", name);
        ck_assert(tu_rel_diff(what, lg, rl.data, (size_t)n * L) < 1e-4);
        for (int i = 0; i < n; i++) {
            int best = 0;
            for (int l = 1; l < L; l++)
                if (rl.data[(size_t)i * L + l] > rl.data[(size_t)i * L + best])
                    best = l;
            ck_assert_int_eq(top[i].id, best);
        }
        free(lg);
        free(top);
        vit_array_free(&rl);
    } else {
        ck_assert(vit_classify_pixels(s, px, n, 1, NULL, NULL, &err) ==
                  VIT_E_NO_HEAD);
    }
    free(out);
    free(px);
    vit_array_free(&rp);
    vit_array_free(&re);
    for (int i = 0; i < n; i++)
        vit_image_free(&imgs[i]);
    free(imgs);
    vit_state_free(s);
    vit_model_free(m);
    json_decref(man);
}
END_TEST

/* label_names become the labels; without them, LABEL_i. */
START_TEST(label_names)
{
    vit_model *m = NULL;
    vit_error err;
    ck_assert(vit_model_load(TIMM "/timm_token", NULL, &m, &err) == VIT_OK);
    ck_assert_str_eq(vit_model_label(m, 0), "zero");
    ck_assert_str_eq(vit_model_label(m, 9), "nine, the \"last\" digit");
    vit_model_free(m);
    ck_assert(vit_model_load(TIMM "/timm_avg", NULL, &m, &err) == VIT_OK);
    ck_assert_str_eq(vit_model_label(m, 4), "LABEL_4");
    vit_model_free(m);
    ck_assert(vit_model_load(TIMM "/timm_legacy", NULL, &m, &err) == VIT_OK);
    ck_assert_str_eq(vit_model_label(m, 2), "bird");
    vit_model_free(m);
}
END_TEST

/* The command, from files: the labels timm's logits rank first, and the
 * features `vit embed` prints. */
START_TEST(command_classifies_and_embeds)
{
    tu_run_result r;
    tu_run(&r, "classify", "--model", TIMM "/timm_token", "--format", "jsonl",
           "-k", "1", "--logits", PHOTOS "/landscape.jpg", NULL);
    ck_assert_msg(r.code == 0, "%s", r.err);
    json_error_t je;
    json_t *o = json_loads(r.out, 0, &je);
    ck_assert_msg(o, "%s", r.out);
    vit_array rl = tu_fixture("timm/timm_token", "ref_logits.npy");
    int best = 0;
    for (int l = 1; l < 10; l++)
        if (rl.data[l] > rl.data[best])
            best = l;
    json_t *top = json_array_get(json_object_get(o, "labels"), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(top, "id")), best);
    static const char *const names[] = {
        "zero", "one", "two", "three", "four", "five", "six", "seven",
        "eight", "nine, the \"last\" digit"};
    ck_assert_str_eq(json_string_value(json_object_get(top, "label")),
                     names[best]);
    json_t *lg = json_object_get(o, "logits");
    ck_assert_int_eq(json_array_size(lg), 10);
    for (int l = 0; l < 10; l++)
        ck_assert(fabs(json_number_value(json_array_get(lg, l)) -
                       rl.data[l]) <= 1e-4 * (1 + fabs(rl.data[l])));
    json_decref(o);
    vit_array_free(&rl);
    free(r.out);
    free(r.err);

    tu_run(&r, "embed", "--model", TIMM "/timm_noclass", "--format", "jsonl",
           "--no-normalize", PHOTOS "/portrait.jpg", NULL);
    ck_assert_msg(r.code == 0, "%s", r.err);
    o = json_loads(r.out, 0, &je);
    ck_assert_msg(o, "%s", r.out);
    json_t *e = json_object_get(o, "embedding");
    vit_array re = tu_fixture("timm/timm_noclass", "ref_embed.npy");
    int D = (int)re.shape[1];
    ck_assert_int_eq(json_array_size(e), D);
    /* The second photo's row. */
    float got[64];
    ck_assert(D <= 64);
    for (int d = 0; d < D; d++)
        got[d] = (float)json_number_value(json_array_get(e, d));
    ck_assert(tu_rel_diff("timm embed command", got, re.data + D, (size_t)D) <
              1e-4);
    json_decref(o);
    vit_array_free(&re);
    free(r.out);
    free(r.err);
}
END_TEST

START_TEST(bin_only_refused)
{
    vit_model *m = NULL;
    vit_error err = {{0}};
    ck_assert(vit_model_load(TIMM "/bin_only", NULL, &m, &err) ==
              VIT_E_UNSUPPORTED);
    printf("timm bin_only: %s\n", err.msg);
    ck_assert_ptr_nonnull(strstr(err.msg, "pytorch_model.bin"));
    ck_assert_ptr_nonnull(strstr(err.msg, "save_for_hf"));
}
END_TEST

/* A copy of timm_token whose config.json has `key` set to the JSON
 * `value` (at the top, in model_args or in pretrained_cfg: where 0, 1,
 * 2), loaded: the status, message in err. */
static vit_status load_edited(const char *key, const char *value, int where,
                              vit_error *err)
{
    char *dir = tu_tmpdir(), path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    ck_assert(tu_copy(TIMM "/timm_token/model.safetensors", path) == 0);
    json_t *c = json_load_file(TIMM "/timm_token/config.json", 0, NULL);
    ck_assert_ptr_nonnull(c);
    json_t *v = json_loads(value, JSON_DECODE_ANY, NULL);
    ck_assert_ptr_nonnull(v);
    static const char *const in[] = {NULL, "model_args", "pretrained_cfg"};
    json_object_set_new(where ? json_object_get(c, in[where]) : c, key, v);
    snprintf(path, sizeof path, "%s/config.json", dir);
    ck_assert(json_dump_file(c, path, 0) == 0);
    json_decref(c);
    vit_model *m = NULL;
    vit_status st = vit_model_load(dir, NULL, &m, err);
    vit_model_free(m);
    tu_rmrf(dir);
    free(dir);
    return st;
}

START_TEST(refusals)
{
    static const struct {
        const char *key, *value;
        int where;
        const char *says;
    } cases[] = {
        {"architecture", "\"vit_base_patch16_rope_reg1_gap_256\"", 0,
         "is not one of timm's"},
        {"architecture", "\"aimv2_large_patch14_224\"", 0,
         "its MLP is SwiGLU"},
        {"global_pool", "\"\"", 1, "global_pool \"\""},
        {"global_pool", "\"map\"", 1, "attn_pool"},
        {"num_heads", "5", 1, "does not divide"},
        {"block_fn", "\"ParallelScalingBlock\"", 1, "block_fn"},
        {"act_layer", "\"hard_swish\"", 1, "act_layer"},
        {"num_classes", "7", 1, "head.weight"},
        {"label_names", "[\"a\", \"b\"]", 0, "2 label_names for 10"},
        {"label_names", "{\"0\": \"a\"}", 0, "no string for class 1"},
        {"model_args", "[]", 0, "must be objects"},
        {"num_heads", "\"4\"", 1, "num_heads"},
        {"pos_embed", "\"none\"", 1, "pos_embed"},
        {"input_size", "[3, 40, 32]", 2, "positions"},
        {"input_size", "[1, 32, 32]", 2, "channels"},
        {"input_size", "224", 2, "input_size"},
        {"crop_mode", "\"random\"", 2, "crop_mode"},
        {"interpolation", "\"random\"", 2, "interpolation"},
        {"crop_pct", "-1", 2, "crop_pct"},
        {"mean", "[0.5]", 2, "mean"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        vit_error err = {{0}};
        vit_status st = load_edited(cases[i].key, cases[i].value,
                                    cases[i].where, &err);
        printf("timm %s %s: %s\n", cases[i].key, cases[i].value, err.msg);
        ck_assert_msg(st != VIT_OK, "%s %s loaded", cases[i].key,
                      cases[i].value);
        ck_assert_msg(strstr(err.msg, cases[i].says), "%s %s: %s",
                      cases[i].key, cases[i].value, err.msg);
    }
}
END_TEST

/* An index knows a timm model by its content, as any other: the
 * fingerprint covers config.json (its pretrained_cfg, which is the
 * preprocessing, too) and the weights. */
START_TEST(fingerprint_by_content)
{
    vit_model *m = NULL;
    vit_error err;
    ck_assert(vit_model_load(TIMM "/timm_token", NULL, &m, &err) == VIT_OK);
    vit_model_info info;
    vit_model_get_info(m, &info);
    idx_model a, b, c;
    idx_error ie;
    ck_assert(idx_model_fingerprint(TIMM "/timm_token", info.architecture,
                                    info.embed_dim, &a, &ie) == IDX_OK);
    ck_assert(idx_model_fingerprint(TIMM "/timm_token", info.architecture,
                                    info.embed_dim, &b, &ie) == IDX_OK);
    ck_assert_str_eq(a.fingerprint, b.fingerprint);
    ck_assert_str_eq(a.architecture, "vit_base_patch16_224");
    /* The same weights under another crop_pct are another model. */
    char *dir = tu_tmpdir(), path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    ck_assert(tu_copy(TIMM "/timm_token/model.safetensors", path) == 0);
    json_t *cfg = json_load_file(TIMM "/timm_token/config.json", 0, NULL);
    json_object_set_new(json_object_get(cfg, "pretrained_cfg"), "crop_pct",
                        json_real(1.0));
    snprintf(path, sizeof path, "%s/config.json", dir);
    ck_assert(json_dump_file(cfg, path, 0) == 0);
    json_decref(cfg);
    ck_assert(idx_model_fingerprint(dir, info.architecture, info.embed_dim,
                                    &c, &ie) == IDX_OK);
    ck_assert_str_ne(a.fingerprint, c.fingerprint);
    tu_rmrf(dir);
    free(dir);
    vit_model_free(m);
}
END_TEST

Suite *timm_suite(void)
{
    Suite *s = suite_create("timm");
    TCase *tc = tcase_create("timm");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, fixture_matches_timm, 0, count());
    tcase_add_test(tc, label_names);
    tcase_add_test(tc, command_classifies_and_embeds);
    tcase_add_test(tc, bin_only_refused);
    tcase_add_test(tc, refusals);
    tcase_add_test(tc, fingerprint_by_content);
    suite_add_tcase(s, tc);
    return s;
}
