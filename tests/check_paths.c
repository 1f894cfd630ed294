/*
 * Every CPU path the machine can run (VIT_ISA caps the path; the table is
 * read once per process, so each path runs in a `vit` process of its own),
 * and on each, numbers that do not depend on how the work is cut: an
 * image's float32 outputs are the same bytes whether it is alone or in a
 * batch of 3 or 8, on 1, 2 or 3 threads. And each path agrees with the
 * reference on the hub photos.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/cpu.h"
#include "tests/testutil.h"
#include "vit/vit.h"

static const char *const paths[] = {"generic", "avx2", "avx512"};
#define NPATHS 3

static const char *const photos[] = {
    FIXTURES "/hub/photos/landscape.jpg", FIXTURES "/hub/photos/portrait.jpg",
    FIXTURES "/hub/photos/tall.png",      FIXTURES "/hub/photos/wide.png",
    FIXTURES "/hub/photos/tiny.png",      FIXTURES "/hub/photos/palette_trns.png",
    FIXTURES "/hub/photos/gray_trns.png", FIXTURES "/hub/photos/rgba.png",
    FIXTURES "/hub/photos/exif6.jpg",
};
#define NPHOTOS 9

/* Runs `vit embed` (the CLIP's image embeddings, not normalized, as a
 * .npy) or `vit classify --logits` (the ViT's logits) on the photos under
 * VIT_ISA=path; returns the output file's bytes. */
static unsigned char *run_path(const char *path, int clip, int batch,
                               int threads, const char *dir, size_t *n)
{
    char out[512], b[16], t[16];
    snprintf(out, sizeof out, "%s/%s-%d-%d.out", dir, path, batch, threads);
    snprintf(b, sizeof b, "%d", batch);
    snprintf(t, sizeof t, "%d", threads);
    const char *args[40];
    int k = 0;
    if (clip) {
        const char *head[] = {"embed", "--model", FIXTURES "/hub/clip_openai",
                              "--no-normalize", "--format", "npy", "--out",
                              out, "--batch", b, "--threads", t, "--image"};
        for (size_t i = 0; i < sizeof head / sizeof *head; i++)
            args[k++] = head[i];
    } else {
        const char *head[] = {"classify", "--model", FIXTURES "/hub/vit_crop",
                              "--logits", "--format", "jsonl", "--batch", b,
                              "--threads", t};
        for (size_t i = 0; i < sizeof head / sizeof *head; i++)
            args[k++] = head[i];
    }
    for (int i = 0; i < NPHOTOS; i++)
        args[k++] = photos[i];
    args[k] = NULL;
    setenv("VIT_ISA", path, 1);
    tu_run_result r;
    tu_run_argv(&r, args);
    ck_assert_msg(r.code == 0, "VIT_ISA=%s: exit %d: %s", path, r.code, r.err);
    unsigned char *bytes;
    if (clip) {
        bytes = tu_read(out, n);
        ck_assert_ptr_nonnull(bytes);
    } else {
        *n = strlen(r.out);
        bytes = (unsigned char *)strdup(r.out);
    }
    tu_run_free(&r);
    return bytes;
}

static void same_bytes_every_cut(int clip)
{
    char *saved = tu_env_save("VIT_ISA");
    char *dir = tu_tmpdir();
    const int cuts[][2] = {{1, 1}, {3, 1}, {8, 1}, {1, 2}, {3, 2},
                           {8, 2}, {1, 3}, {3, 3}, {8, 3}};
    int ran = 0;
    for (int p = 0; p < NPATHS; p++) {
        if ((int)cpu_get()->best < p)
            continue; /* the CPU cannot run it */
        size_t n0;
        unsigned char *first = run_path(paths[p], clip, 1, 1, dir, &n0);
        for (size_t c = 1; c < sizeof cuts / sizeof *cuts; c++) {
            size_t n;
            unsigned char *b =
                run_path(paths[p], clip, cuts[c][0], cuts[c][1], dir, &n);
            ck_assert_msg(n == n0 && memcmp(b, first, n) == 0,
                          "VIT_ISA=%s %s: batch %d on %d threads differs "
                          "from one image at a time on one thread",
                          paths[p], clip ? "CLIP" : "ViT", cuts[c][0],
                          cuts[c][1]);
            free(b);
        }
        printf("paths %-7s %s: the same bytes at batch 1, 3, 8 on 1, 2, 3 "
               "threads\n",
               paths[p], clip ? "CLIP embeddings" : "ViT logits");
        free(first);
        ran++;
    }
    ck_assert_int_ge(ran, 1);
    tu_env_restore("VIT_ISA", saved);
    tu_rmrf(dir);
    free(dir);
}

START_TEST(clip_same_bytes_every_cut) { same_bytes_every_cut(1); }
END_TEST

START_TEST(vit_same_bytes_every_cut) { same_bytes_every_cut(0); }
END_TEST

/* Each path's embeddings against transformers' (hub fixtures). */
START_TEST(every_path_matches_reference)
{
    char *saved = tu_env_save("VIT_ISA");
    char *dir = tu_tmpdir();
    vit_array ref = tu_fixture("hub/clip_openai", "ref_out_pil.npy");
    for (int p = 0; p < NPATHS; p++) {
        if ((int)cpu_get()->best < p)
            continue;
        size_t n;
        unsigned char *b = run_path(paths[p], 1, 8, 2, dir, &n);
        free(b);
        char out[512], what[64];
        snprintf(out, sizeof out, "%s/%s-8-2.out", dir, paths[p]);
        vit_array got;
        vit_error err;
        ck_assert_msg(vit_npy_read(out, &got, &err) == VIT_OK, "%s", err.msg);
        snprintf(what, sizeof what, "paths %s vs transformers", paths[p]);
        ck_assert(tu_rel_diff(what, got.data, ref.data,
                              (size_t)(ref.shape[0] * ref.shape[1])) < 1e-4);
        vit_array_free(&got);
    }
    vit_array_free(&ref);
    tu_env_restore("VIT_ISA", saved);
    tu_rmrf(dir);
    free(dir);
}
END_TEST

Suite *paths_suite(void)
{
    Suite *s = suite_create("paths");
    TCase *tc = tcase_create("paths");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, clip_same_bytes_every_cut);
    tcase_add_test(tc, vit_same_bytes_every_cut);
    tcase_add_test(tc, every_path_matches_reference);
    suite_add_tcase(s, tc);
    return s;
}
