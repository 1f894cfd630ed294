/*
 * Bad checkpoints: each test copies the tiny fixture model into a temporary
 * directory, breaks one thing (the safetensors header, the data section,
 * config.json, the file set) and checks that loading fails with the right
 * status and a message naming the problem, and crashes nothing. The broken
 * safetensors files are made here by rewriting the real fixture's header
 * with jansson, so each case differs from a valid file in one way only.
 */
#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "vit/vit_impl.h"

#define SRC FIXTURES "/vit_tiny"

typedef struct {
    char *dir;
    json_t *hdr;           /* the fixture's header, to be mutated */
    unsigned char *data;   /* its data section */
    size_t dlen;
} fixture;

static fixture setup_copy(void)
{
    fixture f = {0};
    f.dir = tu_tmpdir();
    ck_assert_ptr_nonnull(f.dir);
    char a[512], b[512];
    const char *files[] = {"config.json", "preprocessor_config.json"};
    for (int i = 0; i < 2; i++) {
        snprintf(a, sizeof a, SRC "/%s", files[i]);
        snprintf(b, sizeof b, "%s/%s", f.dir, files[i]);
        ck_assert_int_eq(tu_copy(a, b), 0);
    }
    size_t n;
    unsigned char *st = tu_read(SRC "/model.safetensors", &n);
    ck_assert_ptr_nonnull(st);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--)
        hl = hl << 8 | st[i];
    f.hdr = json_loadb((const char *)st + 8, hl, 0, NULL);
    ck_assert_ptr_nonnull(f.hdr);
    f.dlen = n - 8 - hl;
    f.data = malloc(f.dlen);
    memcpy(f.data, st + 8 + hl, f.dlen);
    free(st);
    return f;
}

/* Writes f.hdr and the first `dlen` bytes of data as model.safetensors,
 * the header padded with spaces to 8 bytes as the format's writer does. */
static void write_st(const fixture *f, size_t dlen)
{
    char *h = json_dumps(f->hdr, JSON_COMPACT);
    size_t hl = strlen(h), pad = (8 - hl % 8) % 8;
    size_t total = 8 + hl + pad + dlen;
    unsigned char *buf = malloc(total);
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)((hl + pad) >> (8 * i));
    memcpy(buf + 8, h, hl);
    memset(buf + 8 + hl, ' ', pad);
    memcpy(buf + 8 + hl + pad, f->data, dlen);
    char p[512];
    snprintf(p, sizeof p, "%s/model.safetensors", f->dir);
    ck_assert_int_eq(tu_write(p, buf, total), 0);
    free(buf);
    free(h);
}

static void teardown(fixture *f)
{
    tu_rmrf(f->dir);
    free(f->dir);
    json_decref(f->hdr);
    free(f->data);
}

/* Loads f->dir, expecting failure with `want` and `needle` in the message. */
static void expect_fail(const fixture *f, vit_status want, const char *needle)
{
    vit_model *m = NULL;
    vit_error err = {{0}};
    vit_status st = vit_model_load(f->dir, NULL, &m, &err);
    printf("%-18s -> %s: %s\n", vit_status_str(want), vit_status_str(st),
           err.msg);
    ck_assert_msg(st == want, "got %s (%s), want %s", vit_status_str(st),
                  err.msg, vit_status_str(want));
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(err.msg, needle), "message '%s' lacks '%s'", err.msg,
                  needle);
}

static json_t *entry(const fixture *f, const char *name)
{
    json_t *e = json_object_get(f->hdr, name);
    ck_assert_ptr_nonnull(e);
    return e;
}

START_TEST(valid_copy_loads)
{
    /* The rewriting itself must not break a good file, or every case
     * below would pass for the wrong reason. */
    fixture f = setup_copy();
    write_st(&f, f.dlen);
    vit_model *m = NULL;
    vit_error err;
    ck_assert_msg(vit_model_load(f.dir, NULL, &m, &err) == VIT_OK, "%s",
                  err.msg);
    vit_model_free(m);
    teardown(&f);
}
END_TEST

START_TEST(truncated_file)
{
    fixture f = setup_copy();
    write_st(&f, f.dlen / 2);
    expect_fail(&f, VIT_E_CHECKPOINT, "outside");
    teardown(&f);
}
END_TEST

START_TEST(shorter_than_header_length)
{
    fixture f = setup_copy();
    char p[512];
    snprintf(p, sizeof p, "%s/model.safetensors", f.dir);
    ck_assert_int_eq(tu_write(p, "\x10\x00", 2), 0);
    expect_fail(&f, VIT_E_CHECKPOINT, "too short");
    teardown(&f);
}
END_TEST

START_TEST(header_length_past_end)
{
    fixture f = setup_copy();
    unsigned char buf[64] = {0};
    buf[0] = 0xff, buf[1] = 0xff, buf[2] = 0x01; /* 131071 bytes */
    memcpy(buf + 8, "{}", 2);
    char p[512];
    snprintf(p, sizeof p, "%s/model.safetensors", f.dir);
    ck_assert_int_eq(tu_write(p, buf, sizeof buf), 0);
    expect_fail(&f, VIT_E_CHECKPOINT, "past the end");
    teardown(&f);
}
END_TEST

START_TEST(header_not_json)
{
    fixture f = setup_copy();
    unsigned char buf[24] = {16, 0, 0, 0, 0, 0, 0, 0};
    memcpy(buf + 8, "{\"a\": [1, 2,,]}x", 16);
    char p[512];
    snprintf(p, sizeof p, "%s/model.safetensors", f.dir);
    ck_assert_int_eq(tu_write(p, buf, sizeof buf), 0);
    expect_fail(&f, VIT_E_CHECKPOINT, "not a JSON object");
    teardown(&f);
}
END_TEST

START_TEST(offsets_outside_data)
{
    fixture f = setup_copy();
    json_t *off = json_object_get(entry(&f, "classifier.bias"), "data_offsets");
    json_array_set_new(off, 0, json_integer((json_int_t)f.dlen));
    json_array_set_new(off, 1, json_integer((json_int_t)f.dlen + 40));
    write_st(&f, f.dlen);
    expect_fail(&f, VIT_E_CHECKPOINT, "classifier.bias");
    teardown(&f);
}
END_TEST

START_TEST(size_mismatch)
{
    fixture f = setup_copy();
    json_t *shape = json_object_get(entry(&f, "classifier.bias"), "shape");
    json_array_set_new(shape, 0, json_integer(11));
    write_st(&f, f.dlen);
    expect_fail(&f, VIT_E_CHECKPOINT, "shape and dtype");
    teardown(&f);
}
END_TEST

START_TEST(unknown_dtype)
{
    fixture f = setup_copy();
    json_object_set_new(entry(&f, "classifier.bias"), "dtype",
                        json_string("F17"));
    write_st(&f, f.dlen);
    expect_fail(&f, VIT_E_CHECKPOINT, "unknown dtype 'F17'");
    teardown(&f);
}
END_TEST

START_TEST(unusable_dtype)
{
    /* A known dtype the model cannot compute with: I32 has F32's size, so
     * only the dtype check can catch it. */
    fixture f = setup_copy();
    json_object_set_new(entry(&f, "classifier.bias"), "dtype",
                        json_string("I32"));
    write_st(&f, f.dlen);
    expect_fail(&f, VIT_E_CHECKPOINT, "not stored as F32, F16 or BF16");
    teardown(&f);
}
END_TEST

START_TEST(overlapping_tensors)
{
    fixture f = setup_copy();
    /* classifier.bias is bytes [0, 40); give the 128-byte layernorm bias
     * a range that starts inside it. */
    json_t *o = json_array();
    json_array_append_new(o, json_integer(20));
    json_array_append_new(o, json_integer(20 + 128));
    json_object_set_new(entry(&f, "vit.layernorm.bias"), "data_offsets", o);
    write_st(&f, f.dlen);
    expect_fail(&f, VIT_E_CHECKPOINT, "overlap");
    teardown(&f);
}
END_TEST

START_TEST(missing_tensor)
{
    fixture f = setup_copy();
    json_object_del(f.hdr, "vit.encoder.layer.1.attention.attention.key.weight");
    write_st(&f, f.dlen);
    expect_fail(&f, VIT_E_CHECKPOINT,
                "no tensor 'vit.encoder.layer.1.attention.attention.key.weight'");
    teardown(&f);
}
END_TEST

START_TEST(wrong_shape)
{
    /* [10, 32] stored as [32, 10]: same bytes, so the header is valid, but
     * it is not what config.json implies. */
    fixture f = setup_copy();
    json_t *shape = json_array();
    json_array_append_new(shape, json_integer(32));
    json_array_append_new(shape, json_integer(10));
    json_object_set_new(entry(&f, "classifier.weight"), "shape", shape);
    write_st(&f, f.dlen);
    expect_fail(&f, VIT_E_CHECKPOINT, "has shape [32, 10]; the config implies "
                                      "[10, 32]");
    teardown(&f);
}
END_TEST

static void write_config(const fixture *f, const char *text)
{
    char p[512];
    snprintf(p, sizeof p, "%s/config.json", f->dir);
    ck_assert_int_eq(tu_write(p, text, strlen(text)), 0);
}

START_TEST(malformed_config)
{
    fixture f = setup_copy();
    write_st(&f, f.dlen);
    write_config(&f, "{\"hidden_size\": 32,, }");
    expect_fail(&f, VIT_E_CONFIG, "malformed JSON");
    write_config(&f, "{\"model_type\": \"vit\", \"hidden_size\": \"big\"}");
    expect_fail(&f, VIT_E_CONFIG, "hidden_size");
    write_config(&f, "{\"model_type\": \"vit\", \"hidden_size\": 30, "
                     "\"num_attention_heads\": 4}");
    expect_fail(&f, VIT_E_CONFIG, "does not divide by num_attention_heads");
    write_config(&f, "{\"model_type\": \"vit\", \"hidden_act\": \"mish\"}");
    expect_fail(&f, VIT_E_UNSUPPORTED, "mish");
    write_config(&f, "{\"model_type\": \"bert\"}");
    expect_fail(&f, VIT_E_UNSUPPORTED, "bert");
    write_config(&f, "[1, 2]");
    expect_fail(&f, VIT_E_CONFIG, "not a JSON object");
    teardown(&f);
}
END_TEST

START_TEST(config_disagrees_with_weights)
{
    /* A config that says 3 layers for a 2-layer checkpoint. */
    fixture f = setup_copy();
    write_st(&f, f.dlen);
    char p[512];
    snprintf(p, sizeof p, "%s/config.json", f.dir);
    json_t *cfg = json_load_file(p, 0, NULL);
    json_object_set_new(cfg, "num_hidden_layers", json_integer(3));
    json_dump_file(cfg, p, 0);
    json_decref(cfg);
    expect_fail(&f, VIT_E_CHECKPOINT, "layer.2");
    teardown(&f);
}
END_TEST

START_TEST(only_pytorch_bin)
{
    fixture f = setup_copy();
    char p[512];
    snprintf(p, sizeof p, "%s/pytorch_model.bin", f.dir);
    ck_assert_int_eq(tu_write(p, "PK", 2), 0);
    expect_fail(&f, VIT_E_UNSUPPORTED, "vit reads safetensors");
    teardown(&f);
}
END_TEST

START_TEST(no_weights_no_config)
{
    fixture f = setup_copy();
    expect_fail(&f, VIT_E_IO, "no model.safetensors");
    char p[512];
    snprintf(p, sizeof p, "%s/config.json", f.dir);
    remove(p);
    expect_fail(&f, VIT_E_IO, "config.json");
    teardown(&f);
}
END_TEST

START_TEST(bad_shard_index)
{
    fixture f = setup_copy();
    char p[512];
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", f.dir);
    const char *idx = "{\"weight_map\": {\"a\": \"../../etc/passwd\"}}";
    ck_assert_int_eq(tu_write(p, idx, strlen(idx)), 0);
    expect_fail(&f, VIT_E_CHECKPOINT, "bad shard file name");
    const char *idx2 = "{\"weight_map\": {\"a\": \"missing.safetensors\"}}";
    ck_assert_int_eq(tu_write(p, idx2, strlen(idx2)), 0);
    expect_fail(&f, VIT_E_IO, "missing.safetensors");
    teardown(&f);
}
END_TEST

START_TEST(processor_size_mismatch)
{
    fixture f = setup_copy();
    write_st(&f, f.dlen);
    char p[512];
    snprintf(p, sizeof p, "%s/preprocessor_config.json", f.dir);
    const char *pre = "{\"size\": {\"height\": 224, \"width\": 224}}";
    ck_assert_int_eq(tu_write(p, pre, strlen(pre)), 0);
    expect_fail(&f, VIT_E_CONFIG, "makes 224x224 images but the model takes "
                                  "32x32");
    teardown(&f);
}
END_TEST

Suite *safetensors_suite(void)
{
    Suite *s = suite_create("safetensors");
    TCase *tc = tcase_create("bad checkpoints");
    tcase_add_test(tc, valid_copy_loads);
    tcase_add_test(tc, truncated_file);
    tcase_add_test(tc, shorter_than_header_length);
    tcase_add_test(tc, header_length_past_end);
    tcase_add_test(tc, header_not_json);
    tcase_add_test(tc, offsets_outside_data);
    tcase_add_test(tc, size_mismatch);
    tcase_add_test(tc, unknown_dtype);
    tcase_add_test(tc, unusable_dtype);
    tcase_add_test(tc, overlapping_tensors);
    tcase_add_test(tc, missing_tensor);
    tcase_add_test(tc, wrong_shape);
    tcase_add_test(tc, malformed_config);
    tcase_add_test(tc, config_disagrees_with_weights);
    tcase_add_test(tc, only_pytorch_bin);
    tcase_add_test(tc, no_weights_no_config);
    tcase_add_test(tc, bad_shard_index);
    tcase_add_test(tc, processor_size_mismatch);
    suite_add_tcase(s, tc);
    return s;
}
