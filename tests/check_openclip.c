/*
 * open_clip's CLIPs as the hub holds them (vit/openclip.c), against
 * open_clip_torch (tests/gen_fixtures_openclip.py): the preprocessing of
 * every resize_mode and interpolation, pixel for pixel; the models'
 * pixels from image files; int8 and bf16 against open_clip's fp32; the
 * index fingerprint; and the refusals, each naming what it refuses. The
 * strings and image files end to end (`vit embed`, `vit match`, `vit
 * classify --labels`, vit_embed_texts) run in tests/check_clipcli.c's
 * loops, which include these fixtures.
 */
#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "index/index.h"
#include "testutil.h"
#include "vit/vit_impl.h"

static const char *const models[] = {"openclip_b32", "openclip_quick",
                                     "openclip_rect"};
#define N_MODELS (int)(sizeof models / sizeof *models)
#define MIN_COSINE 0.999

/* Writes DIR/open_clip_config.json from a JSON text. */
static void write_config(const char *dir, const char *json)
{
    char path[512];
    snprintf(path, sizeof path, "%s/open_clip_config.json", dir);
    ck_assert_int_eq(tu_write(path, json, strlen(json)), 0);
}

/* Reads an image file as vit does (EXIF turn, RGB). */
static void read_image(const char *path, img_rgb *im)
{
    size_t n;
    unsigned char *b = tu_read(path, &n);
    ck_assert_ptr_nonnull(b);
    char err[256];
    img_decode_opts o = img_decode_opts_default();
    ck_assert_msg(img_decode_ex(b, n, &o, im, err, sizeof err) == IMG_OK,
                  "%s: %s", path, err);
    free(b);
}

/* open_clip's image_transform for each resize_mode, interpolation and
 * size, on photos whose crops fall on odd halves: identical tensors. */
START_TEST(preprocess_matches_image_transform)
{
    json_t *j = json_load_file(FIXTURES "/openclip/preprocess.json", 0, NULL);
    ck_assert_ptr_nonnull(j);
    json_t *imgs = json_object_get(j, "images");
    json_t *cases = json_object_get(j, "cases");
    char *dir = tu_tmpdir();
    int checked = 0;
    for (size_t c = 0; c < json_array_size(cases); c++) {
        json_t *cs = json_array_get(cases, c);
        json_t *size = json_object_get(cs, "size");
        int h = (int)json_integer_value(json_array_get(size, 0));
        int w = (int)json_integer_value(json_array_get(size, 1));
        json_t *cfg = json_pack("{sO}", "preprocess_cfg",
                                json_object_get(cs, "preprocess_cfg"));
        char *text = json_dumps(cfg, 0);
        write_config(dir, text);
        free(text);
        json_decref(cfg);
        vit__processor pr;
        vit_error err;
        ck_assert_msg(vit__openclip_processor(dir, h, w, 0, &pr, &err) ==
                          VIT_OK,
                      "%s", err.msg);
        const char *name = json_string_value(json_object_get(cs, "file"));
        vit_array want = tu_fixture("openclip", name);
        ck_assert_int_eq(want.shape[0], (int64_t)json_array_size(imgs));
        ck_assert(want.shape[2] == h && want.shape[3] == w);
        for (size_t i = 0; i < json_array_size(imgs); i++) {
            img_rgb im;
            read_image(json_string_value(json_array_get(imgs, i)), &im);
            int oh, ow;
            img_preprocess_size(&pr.cfg, im.width, im.height, &oh, &ow);
            ck_assert(oh == h && ow == w);
            float *x = malloc(sizeof *x * 3 * h * w);
            char e[256];
            ck_assert_msg(img_preprocess(&im, &pr.cfg, x, h, w, e,
                                         sizeof e) == IMG_OK,
                          "%s", e);
            const float *ref = want.data + i * (size_t)3 * h * w;
            for (int k = 0; k < 3 * h * w; k++)
                ck_assert_msg(x[k] == ref[k],
                              "case %zu (%s) image %zu: element %d is %.9g, "
                              "open_clip's %.9g",
                              c, name, i, k, x[k], ref[k]);
            free(x);
            img_rgb_free(&im);
            checked++;
        }
        vit_array_free(&want);
    }
    printf("open_clip preprocessing: %zu cases, %d images identical\n",
           json_array_size(cases), checked);
    tu_rmrf(dir);
    free(dir);
    json_decref(j);
}
END_TEST

/* Each model's tensors from the image files are open_clip's preprocess
 * output, bit for bit. */
START_TEST(model_pixels_from_files)
{
    const char *name = models[_i];
    char dir[256];
    snprintf(dir, sizeof dir, FIXTURES "/%s", name);
    vit_state *s;
    vit_model *m = tu_load_fixture(name, NULL, &s);
    vit_error err;
    vit_model_info info;
    vit_model_get_info(m, &info);
    ck_assert(info.has_vision && info.has_text && info.has_tokenizer);
    ck_assert_str_eq(info.architecture, "CLIPModel");
    vit_array want = tu_fixture(name, "ref_file_pixels.npy");
    ck_assert(want.shape[2] == info.image_h && want.shape[3] == info.image_w);
    char path[512];
    snprintf(path, sizeof path, "%s/ref_inputs.json", dir);
    json_t *in = json_load_file(path, 0, NULL);
    json_t *imgs = json_object_get(in, "images");
    size_t per = (size_t)3 * info.image_h * info.image_w;
    float *x = malloc(per * sizeof *x);
    for (size_t i = 0; i < json_array_size(imgs); i++) {
        vit_image im;
        ck_assert_msg(vit_image_read(json_string_value(json_array_get(imgs, i)),
                                     vit_model_options(m), &im, &err) ==
                          VIT_OK,
                      "%s", err.msg);
        ck_assert_int_eq(vit_preprocess(m, &im, 1, x, &err), VIT_OK);
        ck_assert_msg(memcmp(x, want.data + i * per, per * sizeof *x) == 0,
                      "%s: image %zu's pixels differ from open_clip's", name,
                      i);
        vit_image_free(&im);
    }
    free(x);
    json_decref(in);
    vit_array_free(&want);
    vit_state_free(s);
    vit_model_free(m);
}
END_TEST

/* fp32 on the random pixels and token ids (padded with 0 to 77, as
 * open_clip pads), within 1e-4; int8 and bf16 at a cosine of 0.999 or
 * more to open_clip's fp32. */
START_TEST(precisions_against_open_clip)
{
    static const struct {
        vit_precision p;
        const char *name;
    } ps[] = {{VIT_PRECISION_FP32, "fp32"},
              {VIT_PRECISION_INT8, "int8"},
              {VIT_PRECISION_BF16, "bf16"}};
    for (int i = 0; i < N_MODELS; i++)
        for (size_t k = 0; k < sizeof ps / sizeof *ps; k++) {
            vit_options opt = vit_options_default();
            opt.precision = ps[k].p;
            vit_state *s;
            vit_model *m = tu_load_fixture(models[i], &opt, &s);
            double ci, ct;
            tu_pair_cosines(s, models[i], &ci, &ct);
            printf("%s %s: cosine to open_clip's fp32: images >= %.7f, "
                   "texts >= %.7f\n",
                   models[i], ps[k].name, ci, ct);
            ck_assert(ci >= MIN_COSINE && ct >= MIN_COSINE);
            if (ps[k].p == VIT_PRECISION_FP32) {
                vit_array px = tu_fixture(models[i], "ref_pixels.npy");
                vit_array wi = tu_fixture(models[i], "ref_image_embeds.npy");
                vit_array ida = tu_fixture(models[i], "ref_ids.npy");
                vit_array wt = tu_fixture(models[i], "ref_text_embeds.npy");
                int ni = (int)px.shape[0], nt = (int)ida.shape[0];
                int T = (int)ida.shape[1], E = (int)wi.shape[1];
                float *img = malloc((size_t)ni * E * sizeof *img);
                float *txt = malloc((size_t)nt * E * sizeof *txt);
                int32_t *ids = malloc((size_t)nt * T * sizeof *ids);
                for (int j = 0; j < nt * T; j++)
                    ids[j] = (int32_t)ida.data[j];
                vit_error err;
                ck_assert_int_eq(vit_embed_pixels(s, px.data, ni, img, &err),
                                 VIT_OK);
                ck_assert_int_eq(
                    vit__embed_ids(s, ids, NULL, nt, T, txt, &err), VIT_OK);
                ck_assert(tu_rel_diff("open_clip encode_image", img, wi.data,
                                      (size_t)ni * E) < 1e-4);
                ck_assert(tu_rel_diff("open_clip encode_text", txt, wt.data,
                                      (size_t)nt * E) < 1e-4);
                free(img), free(txt), free(ids);
                vit_array_free(&px), vit_array_free(&wi),
                    vit_array_free(&ida), vit_array_free(&wt);
            }
            vit_state_free(s);
            vit_model_free(m);
        }
}
END_TEST

/* Copies a fixture's files (links followed) into a fresh directory. */
static char *copy_fixture(const char *name)
{
    static const char *const files[] = {
        "open_clip_config.json", "open_clip_model.safetensors", "vocab.json",
        "merges.txt", "tokenizer_config.json"};
    char *dir = tu_tmpdir();
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char a[512], b[512];
        snprintf(a, sizeof a, FIXTURES "/%s/%s", name, files[i]);
        snprintf(b, sizeof b, "%s/%s", dir, files[i]);
        ck_assert_int_eq(tu_copy(a, b), 0);
    }
    return dir;
}

/* The index knows an open_clip model by its content: the same files give
 * the same fingerprint wherever they are, another config another one. */
START_TEST(fingerprint_follows_content)
{
    idx_model a, b, c, d;
    idx_error e;
    char *dir = copy_fixture("openclip_b32");
    ck_assert_int_eq(idx_model_fingerprint(FIXTURES "/openclip_b32",
                                           "CLIPModel", 24, &a, &e),
                     IDX_OK);
    ck_assert_int_eq(idx_model_fingerprint(dir, "CLIPModel", 24, &b, &e),
                     IDX_OK);
    ck_assert_str_eq(a.fingerprint, b.fingerprint);
    ck_assert_int_eq(idx_model_fingerprint(FIXTURES "/openclip_quick",
                                           "CLIPModel", 24, &c, &e),
                     IDX_OK);
    ck_assert_str_ne(a.fingerprint, c.fingerprint);
    /* The same weights preprocessed otherwise are another model. */
    char path[512];
    snprintf(path, sizeof path, "%s/open_clip_config.json", dir);
    size_t n;
    unsigned char *raw = tu_read(path, &n);
    char *text = calloc(n + 1, 1);
    memcpy(text, raw, n);
    free(raw);
    const char *key = "\"preprocess_cfg\": {";
    char *p = strstr(text, key);
    ck_assert_ptr_nonnull(p);
    char *edited = malloc(n + 64);
    size_t head = (size_t)(p - text) + strlen(key);
    snprintf(edited, n + 64, "%.*s\"resize_mode\": \"squash\", %s",
             (int)head, text, text + head);
    ck_assert_int_eq(tu_write(path, edited, strlen(edited)), 0);
    ck_assert_int_eq(idx_model_fingerprint(dir, "CLIPModel", 24, &d, &e),
                     IDX_OK);
    ck_assert_str_ne(a.fingerprint, d.fingerprint);
    /* ... which vit reads: squash makes other pixels. */
    vit_model *m;
    vit_error err;
    ck_assert_msg(vit_model_load(dir, NULL, &m, &err) == VIT_OK, "%s",
                  err.msg);
    ck_assert(!vit__model_processor(m)->cfg.do_center_crop);
    vit_model_free(m);
    free(text), free(edited);
    tu_rmrf(dir);
    free(dir);
}
END_TEST

/* Embeds two texts with the model in dir; returns their cosine. */
static double text_cosine(const char *dir, const char *a, const char *b)
{
    vit_model *m;
    vit_state *s;
    vit_error err;
    ck_assert_msg(vit_model_load(dir, NULL, &m, &err) == VIT_OK, "%s",
                  err.msg);
    ck_assert_int_eq(vit_state_new(m, &s, &err), VIT_OK);
    const char *texts[2] = {a, b};
    float e[2 * 64];
    vit_model_info info;
    vit_model_get_info(m, &info);
    ck_assert(info.embed_dim <= 64);
    ck_assert_int_eq(vit_embed_texts(s, texts, 2, e, &err), VIT_OK);
    double c = tu_min_cosine(e, e + info.embed_dim, 1, info.embed_dim);
    vit_state_free(s);
    vit_model_free(m);
    return c;
}

/* SimpleTokenizer cleans (a curly apostrophe is a straight one) and
 * lowercases; with hf_tokenizer_name open_clip's HFTokenizer cleans the
 * same, then runs the directory's tokenizer as transformers does, whose
 * special tokens are its own: "<|endoftext|>" is one token there, three
 * pieces to SimpleTokenizer. */
START_TEST(hf_tokenizer_name)
{
    const char *curly = "the cat\u2019s toy", *straight = "the cat's toy";
    const char *eot = "a cat<|endoftext|>", *pieces = "a cat<| endoftext |>";
    ck_assert(text_cosine(FIXTURES "/openclip_b32", curly, straight) >
              1 - 1e-9);
    ck_assert(text_cosine(FIXTURES "/openclip_b32", eot, pieces) > 1 - 1e-9);
    char *dir = copy_fixture("openclip_b32");
    char path[512];
    snprintf(path, sizeof path, "%s/open_clip_config.json", dir);
    json_t *o = json_load_file(path, 0, NULL);
    json_object_set_new(
        json_object_get(json_object_get(o, "model_cfg"), "text_cfg"),
        "hf_tokenizer_name", json_string("someone/tokenizer"));
    ck_assert_int_eq(json_dump_file(o, path, 0), 0);
    json_decref(o);
    ck_assert(text_cosine(dir, curly, straight) > 1 - 1e-9);
    ck_assert(text_cosine(dir, eot, pieces) < 0.999);
    tu_rmrf(dir);
    free(dir);
}
END_TEST

/* An index made with an open_clip model: searched by text with it, or
 * with a copy of it elsewhere (the same content); another open_clip
 * model is refused. */
START_TEST(index_with_open_clip)
{
    char *dir = tu_tmpdir(), ix[512];
    snprintf(ix, sizeof ix, "%s/ix.db", dir);
    char *copy = copy_fixture("openclip_b32");
    tu_run_result r;
    tu_run(&r, "index", "add", "--model", FIXTURES "/openclip_b32", "--index",
           ix, "tests/fixtures/cli", NULL);
    ck_assert_msg(r.code == 0, "%s", r.err);
    tu_run_free(&r);
    tu_run(&r, "index", "search", "--index", ix, "--model", copy, "--text",
           "a photo of a cat", "-k", "3", NULL);
    ck_assert_msg(r.code == 0, "%s", r.err);
    ck_assert_ptr_nonnull(strstr(r.out, "photo.jpg"));
    tu_run_free(&r);
    tu_run(&r, "index", "search", "--index", ix, "--model",
           FIXTURES "/openclip_quick", "--text", "a cat", NULL);
    ck_assert_int_ne(r.code, 0);
    ck_assert_ptr_nonnull(strstr(r.err, "openclip_b32/CLIPModel@"));
    tu_run_free(&r);
    tu_rmrf(copy);
    free(copy);
    tu_rmrf(dir);
    free(dir);
}
END_TEST

/* Variants open_clip configs can name that vit does not run: each refused,
 * the message naming the field. */
START_TEST(variants_refused)
{
    static const struct {
        const char *cfg, *says;
    } cases[] = {
        {"\"vision_cfg\": {\"timm_model_name\": \"vit_base_patch16_224\"}",
         "vision_cfg.timm_model_name"},
        {"\"vision_cfg\": {\"attentional_pool\": true}",
         "vision_cfg.attentional_pool"},
        {"\"vision_cfg\": {\"layers\": [3, 4, 6, 3]}", "ResNet"},
        {"\"vision_cfg\": {\"pool_type\": \"avg\"}", "vision_cfg.pool_type"},
        {"\"vision_cfg\": {\"ls_init_value\": 1e-5}",
         "vision_cfg.ls_init_value"},
        {"\"vision_cfg\": {\"no_ln_pre\": true}", "vision_cfg.no_ln_pre"},
        {"\"vision_cfg\": {}, \"text_cfg\": {\"hf_model_name\": \"xlm\"}",
         "text_cfg.hf_model_name"},
        {"\"vision_cfg\": {}, \"text_cfg\": {\"pool_type\": \"last\"}",
         "text_cfg.pool_type"},
        {"\"vision_cfg\": {}, \"text_cfg\": {\"proj_bias\": true}",
         "text_cfg.proj_bias"},
        {"\"vision_cfg\": {}, \"text_cfg\": {\"no_causal_mask\": true}",
         "text_cfg.no_causal_mask"},
        {"\"vision_cfg\": {}, \"text_cfg\": {\"tokenizer_kwargs\": "
         "{\"clean\": \"canonicalize\"}}",
         "text_cfg.tokenizer_kwargs.clean"},
        {"\"init_logit_bias\": -10, \"vision_cfg\": {}, \"text_cfg\": {}",
         "init_logit_bias"},
        {"\"multimodal_cfg\": {\"width\": 512}, \"vision_cfg\": {}, "
         "\"text_cfg\": {}",
         "multimodal_cfg"},
    };
    char *dir = tu_tmpdir();
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char json[512];
        snprintf(json, sizeof json, "{\"model_cfg\": {%s%s}}", cases[i].cfg,
                 strstr(cases[i].cfg, "text_cfg") ? "" : ", \"text_cfg\": {}");
        write_config(dir, json);
        vit_model *m;
        vit_error err;
        ck_assert_int_eq(vit_model_load(dir, NULL, &m, &err),
                         VIT_E_UNSUPPORTED);
        ck_assert_msg(strstr(err.msg, cases[i].says) &&
                          strstr(err.msg, "open_clip_config.json"),
                      "case %zu: %s", i, err.msg);
    }
    /* Bad preprocessing values. */
    write_config(dir, "{\"model_cfg\": {\"vision_cfg\": {}, \"text_cfg\": {}},"
                      " \"preprocess_cfg\": {\"resize_mode\": \"stretch\"}}");
    vit_model *m;
    vit_error err;
    ck_assert_int_eq(vit_model_load(dir, NULL, &m, &err), VIT_E_CONFIG);
    ck_assert_ptr_nonnull(strstr(err.msg, "resize_mode \"stretch\""));
    tu_rmrf(dir);
    free(dir);
}
END_TEST

/* A directory with open_clip_pytorch_model.bin alone is refused with the
 * conversion; torchvision preprocessing, which open_clip has not, too. */
START_TEST(bin_only_and_torchvision_refused)
{
    char *dir = copy_fixture("openclip_b32");
    char a[512], b[512];
    snprintf(a, sizeof a, "%s/open_clip_model.safetensors", dir);
    snprintf(b, sizeof b, "%s/open_clip_pytorch_model.bin", dir);
    ck_assert_int_eq(rename(a, b), 0);
    vit_model *m;
    vit_error err;
    ck_assert_int_eq(vit_model_load(dir, NULL, &m, &err), VIT_E_UNSUPPORTED);
    ck_assert_msg(strstr(err.msg, "holds only open_clip_pytorch_model.bin") &&
                      strstr(err.msg, "safetensors.torch.save_file"),
                  "%s", err.msg);
    ck_assert_int_eq(unlink(b), 0);
    ck_assert_int_eq(vit_model_load(dir, NULL, &m, &err), VIT_E_IO);
    ck_assert_ptr_nonnull(strstr(err.msg, "no open_clip_model.safetensors"));
    tu_rmrf(dir);
    free(dir);

    vit_options opt = vit_options_default();
    opt.preprocess = VIT_PREPROCESS_TORCHVISION;
    ck_assert_int_eq(vit_model_load(FIXTURES "/openclip_b32", &opt, &m, &err),
                     VIT_E_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err.msg, "--preprocess torchvision"));
}
END_TEST

/* open_clip's tokenizer: its SimpleTokenizer's ids on the text suite's
 * strings and on strings its cleaning changes (curly quotes, entities,
 * ligatures, full-width forms, controls, escapes), through the CLIP
 * tokenizer files with the cleaning on; where ftfy's mojibake repair, which
 * vit does not do, changes the text, the ids it gives without it. Strings
 * with code points unassigned in the reference's Unicode may differ (its
 * regex module's classes for them are its own). */
START_TEST(tokenizer_matches_simple_tokenizer)
{
    json_t *j = json_load_file(FIXTURES "/openclip/tokens.json", 0, NULL);
    ck_assert_ptr_nonnull(j);
    txt_tokenizer *t;
    char e[256];
    ck_assert_msg(txt_tokenizer_load(FIXTURES "/clip_tok", &t, e, sizeof e) ==
                      TXT_OK,
                  "%s", e);
    txt_set_openclip_clean(t, TXT_OPENCLIP_SIMPLE);
    json_t *cases = json_object_get(j, "cases");
    enum { CAP = 8192 };
    int32_t *ids = malloc(CAP * sizeof *ids);
    int n = (int)json_array_size(cases), same = 0, mojibake = 0;
    int unassigned = 0, differ = 0;
    for (int i = 0; i < n; i++) {
        json_t *c = json_array_get(cases, (size_t)i);
        const char *hex = json_string_value(json_array_get(c, 0));
        size_t len = strlen(hex) / 2;
        char *s = malloc(len + 1);
        for (size_t k = 0; k < len; k++)
            sscanf(hex + 2 * k, "%2hhx", (unsigned char *)&s[k]);
        json_t *real = json_array_get(c, 1), *nofe = json_array_get(c, 2);
        json_t *want = json_is_array(nofe) ? nofe : real;
        mojibake += json_is_array(nofe);
        int k = txt_encode(t, s, len, ids, CAP);
        int ok = k == (int)json_array_size(want);
        for (int x = 0; ok && x < k; x++)
            ok = ids[x] == json_integer_value(json_array_get(want, (size_t)x));
        int cn = json_is_true(json_array_get(c, 3));
        ck_assert_msg(ok || cn, "case %d (%s): %d ids differ from open_clip's",
                      i, hex, k);
        same += ok && !json_is_array(nofe);
        unassigned += cn;
        differ += !ok;
        free(s);
    }
    /* Its HFTokenizer: the same cleaning, not lowercased, then the
     * tokenizer as transformers runs it (truncated at 77, as it pads). */
    txt_set_openclip_clean(t, TXT_OPENCLIP_HF);
    json_t *hf = json_object_get(j, "hf");
    for (size_t i = 0; i < json_array_size(hf); i++) {
        json_t *c = json_array_get(hf, i);
        const char *hex = json_string_value(json_array_get(c, 0));
        size_t len = strlen(hex) / 2;
        char *s = malloc(len + 1);
        for (size_t k = 0; k < len; k++)
            sscanf(hex + 2 * k, "%2hhx", (unsigned char *)&s[k]);
        json_t *want = json_array_get(c, 1);
        int k = txt_encode(t, s, len, ids, 77);
        int ok = k == (int)json_array_size(want);
        for (int x = 0; ok && x < k; x++)
            ok = ids[x] == json_integer_value(json_array_get(want, (size_t)x));
        ck_assert_msg(ok, "HFTokenizer case %zu (%s) differs", i, hex);
        free(s);
    }
    printf("open_clip's tokenizer: %d strings; ids identical for %d; for "
           "the %d that ftfy's mojibake repair changes, identical to its "
           "ids without it; %d differ, all among the %d with code points "
           "Python's Unicode 14 has not assigned; its HFTokenizer's on all "
           "%zu\n",
           n, same, mojibake, differ, unassigned, json_array_size(hf));
    free(ids);
    txt_tokenizer_free(t);
    json_decref(j);
}
END_TEST

Suite *openclip_suite(void)
{
    Suite *s = suite_create("openclip");
    TCase *tc = tcase_create("openclip");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, preprocess_matches_image_transform);
    tcase_add_loop_test(tc, model_pixels_from_files, 0, N_MODELS);
    tcase_add_test(tc, precisions_against_open_clip);
    tcase_add_test(tc, fingerprint_follows_content);
    tcase_add_test(tc, index_with_open_clip);
    tcase_add_test(tc, hf_tokenizer_name);
    tcase_add_test(tc, variants_refused);
    tcase_add_test(tc, tokenizer_matches_simple_tokenizer);
    tcase_add_test(tc, bin_only_and_torchvision_refused);
    suite_add_tcase(s, tc);
    return s;
}
