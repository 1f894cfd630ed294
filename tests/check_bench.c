/*
 * `vit bench` on the tiny fixture model: it runs every requested thread
 * count and batch size, prints the sgemm ratio and, with --profile, a row
 * per kind of op whose shares add up to 100%, and a memory row per case;
 * with --dir it times a directory end to end for each decode-threads
 * setting; it refuses bad options, each with its message. What it measures is not checked here
 * (timings are for benchmarks); the memory accounting it reports is
 * (vit_state_memory).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "vit/vit.h"

#include <sys/stat.h>
#include <unistd.h>

START_TEST(bench_runs_and_profiles)
{
    tu_run_result r;
    tu_run(&r, "bench", "--model", FIXTURES "/vit_tiny", "--batch", "1",
           "--batch", "3", "--threads", "1", "--threads", "2", "--profile",
           "--seconds", "0.05", NULL);
    ck_assert_msg(r.code == 0, "%s", r.err);
    ck_assert_ptr_nonnull(strstr(r.out, "1 threads:"));
    ck_assert_ptr_nonnull(strstr(r.out, "2 threads:"));
    ck_assert_ptr_nonnull(strstr(r.out, "FMA peak"));
    ck_assert_ptr_nonnull(strstr(r.out, "cpu: "));
    ck_assert_ptr_nonnull(strstr(r.out, "peak resident memory"));
    /* After each thread count, vit's GEMM and OpenBLAS's at the model's
     * largest product (vit_tiny: 17 tokens of 32, MLP 64, at batch 3),
     * the better one marked. */
    int gemms = 0, best = 0;
    for (const char *p = r.out;
         (p = strstr(p, "GEMM at the model's largest product (M 51 = 3 x 17 "
                        "tokens, K 32, N 64)"));
         p++) {
        const char *v = strstr(p, "\n  vit ("), *o = strstr(p, "\n  OpenBLAS");
        ck_assert(v && o && v < o);
        best += strncmp(strchr(v + 1, '\n') - 6, "  best", 6) == 0;
        best += strncmp(strchr(o + 1, '\n') - 6, "  best", 6) == 0;
        gemms++;
    }
    ck_assert_int_eq(gemms, 2);
    ck_assert_int_eq(best, 2);
    /* Four profiles (2 thread counts x 2 batches), each of six ops whose
     * shares sum to 100. */
    int tables = 0;
    for (const char *p = r.out; (p = strstr(p, "    op ")); p++) {
        double sum = 0;
        const char *q = strchr(p, '\n') + 1;
        for (int k = 0; k < 6; k++) {
            const char *pct = strchr(q, '%');
            ck_assert_ptr_nonnull(pct);
            const char *b = pct;
            while (b > q && b[-1] != ' ')
                b--;
            sum += atof(b);
            q = strchr(q, '\n') + 1;
        }
        ck_assert_msg(sum > 99.5 && sum < 100.5, "shares sum to %g", sum);
        tables++;
    }
    ck_assert_int_eq(tables, 4);
    /* A memory row for each case, from a process that ran it. */
    const char *mem =
        strstr(r.out, "(peak RSS - weights - copied - int8) / arena");
    ck_assert_ptr_nonnull(mem);
    int rows = 0;
    for (const char *q = mem; (q = strchr(q, '\n')); ) {
        q++;
        int t, b;
        double w, copied, int8, arena, start, peak, ratio, less;
        if (sscanf(q, "%d %d %lf %lf %lf %lf %lf %lf %lf %lf", &t, &b, &w,
                   &copied, &int8, &arena, &start, &peak, &ratio,
                   &less) != 10)
            continue;
        ck_assert(t == 1 || t == 2);
        ck_assert(b == 1 || b == 3);
        ck_assert(copied == 0 && int8 == 0 && start > 0 && peak >= start &&
                  ratio > 0);
        ck_assert(less < ratio);
        rows++;
    }
    ck_assert_int_eq(rows, 4);
    tu_run_free(&r);

    const char *const bad[][6] = {
        {"bench", NULL},
        {"bench", "--model", FIXTURES "/vit_tiny", "--batch", "0", NULL},
        {"bench", "--model", FIXTURES "/vit_tiny", "--seconds", "-1", NULL},
        {"bench", "--model", FIXTURES "/vit_tiny", "extra", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        tu_run_argv(&r, bad[i]);
        ck_assert_msg(r.code == 2, "case %zu: exit %d", i, r.code);
        tu_run_free(&r);
    }
    tu_run(&r, "bench", "--model", FIXTURES "/clip_text", NULL);
    ck_assert_int_eq(r.code, 1);
    ck_assert_ptr_nonnull(strstr(r.err, "image towers"));
    tu_run_free(&r);
}
END_TEST

/* --dir: a row for each decode-threads setting, with a ratio. */
START_TEST(bench_dir_runs)
{
    tu_run_result r;
    tu_run(&r, "bench", "--model", FIXTURES "/vit_tiny", "--dir",
           FIXTURES "/cli", "--batch", "2", "--threads", "1",
           "--decode-threads", "0", "--decode-threads", "2", "--rounds", "2",
           NULL);
    ck_assert_msg(r.code == 0, "%s", r.err);
    ck_assert_ptr_nonnull(strstr(r.out, "3 of 3"));
    const char *head = strstr(r.out, "forward img/s");
    ck_assert_ptr_nonnull(head);
    const char *q = strchr(head, '\n') + 1;
    for (int want = 0; want <= 2; want += 2) {
        int t, b, d;
        long n;
        double fwd, e2e, ratio;
        ck_assert_int_eq(sscanf(q, "%d %d %d %ld %lf %lf %lf", &t, &b, &d, &n,
                                &fwd, &e2e, &ratio), 7);
        ck_assert(t == 1 && b == 2 && d == want && n == 3);
        ck_assert(fwd > 0 && e2e > 0 && ratio > 0);
        ck_assert_double_eq_tol(ratio, e2e / fwd, 0.01 * ratio + 0.001);
        q = strchr(q, '\n') + 1;
    }
    tu_run_free(&r);
    /* --images takes the first N. */
    tu_run(&r, "bench", "--model", FIXTURES "/vit_tiny", "--dir",
           FIXTURES "/cli", "--images", "1", "--threads", "1", NULL);
    ck_assert_msg(r.code == 0, "%s", r.err);
    ck_assert_ptr_nonnull(strstr(r.out, "1 of 3"));
    tu_run_free(&r);
    const char *const bad[][8] = {
        {"bench", "--model", FIXTURES "/vit_tiny", "--images", "3", NULL},
        {"bench", "--model", FIXTURES "/vit_tiny", "--dir", FIXTURES "/cli",
         "--decode-threads", "-1", NULL},
        {"bench", "--model", FIXTURES "/vit_tiny", "--dir", FIXTURES "/cli",
         "--profile", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        tu_run_argv(&r, bad[i]);
        ck_assert_msg(r.code == 2, "case %zu: exit %d", i, r.code);
        tu_run_free(&r);
    }
}
END_TEST

/* Its usage errors, each said as `vit bench: message`, exit status 2,
 * before the model is read: a bad or missing value of each option, the
 * repeat limits, an unknown option, the checks across options, and the
 * first bad option on the line the one said. */
START_TEST(bench_usage)
{
#define MODEL_ARGS "--model", FIXTURES "/vit_tiny"
    static const struct {
        const char *args[24];
        const char *says;
    } cases[] = {
        {{"bench", NULL}, "--model DIR is required"},
        {{"bench", "--batch", "1", NULL}, "--model DIR is required"},
        {{"bench", MODEL_ARGS, "--batch", "0", NULL},
         "--batch needs 1 to 4096 (16 at most), not '0'"},
        {{"bench", MODEL_ARGS, "-b", "4097", NULL},
         "--batch needs 1 to 4096 (16 at most), not '4097'"},
        {{"bench", MODEL_ARGS, "-b1", "-b2", "-b3", "-b4", "-b5", "-b6",
          "-b7", "-b8", "-b9", "-b10", "-b11", "-b12", "-b13", "-b14",
          "-b15", "-b16", "-b17", NULL},
         "--batch needs 1 to 4096 (16 at most), not '17'"},
        {{"bench", MODEL_ARGS, "--threads", "257", NULL},
         "--threads needs 1 to 256 (16 at most), not '257'"},
        {{"bench", MODEL_ARGS, "-t", "x", NULL},
         "--threads needs 1 to 256 (16 at most), not 'x'"},
        {{"bench", MODEL_ARGS, "--seconds", "0", NULL},
         "--seconds needs a number of seconds, not '0'"},
        {{"bench", MODEL_ARGS, "--seconds", "601", NULL},
         "--seconds needs a number of seconds, not '601'"},
        {{"bench", MODEL_ARGS, "--dir", "D", "--images", "0", NULL},
         "--images needs a positive integer, not '0'"},
        {{"bench", MODEL_ARGS, "--dir", "D", "--rounds", "1001", NULL},
         "--rounds needs 1 to 1000, not '1001'"},
        {{"bench", MODEL_ARGS, "--dir", "D", "--decode-threads", "17", NULL},
         "--decode-threads needs 0 to 16 (4 at most), not '17'"},
        {{"bench", MODEL_ARGS, "--dir", "D", "--decode-threads", "0",
          "--decode-threads", "1", "--decode-threads", "2",
          "--decode-threads", "3", "--decode-threads", "4", NULL},
         "--decode-threads needs 0 to 16 (4 at most), not '4'"},
        {{"bench", MODEL_ARGS, "--precision", "fp16", NULL},
         "--precision is fp32, int8 or bf16, not 'fp16'"},
        {{"bench", MODEL_ARGS, "--seconds", NULL},
         "option '--seconds' needs an argument"},
        {{"bench", MODEL_ARGS, "--bogus", NULL}, "unknown option '--bogus'"},
        {{"bench", MODEL_ARGS, "extra", NULL},
         "unexpected argument 'extra'"},
        {{"bench", MODEL_ARGS, "--rounds", "2", NULL},
         "--images, --rounds and --decode-threads go with --dir"},
        {{"bench", MODEL_ARGS, "--decode-threads", "0", NULL},
         "--images, --rounds and --decode-threads go with --dir"},
        {{"bench", MODEL_ARGS, "--dir", "D", "--profile", NULL},
         "--profile does not go with --dir"},
        {{"bench", MODEL_ARGS, "--threads", "0", "--batch", "0", NULL},
         "--threads needs 1 to 256"},
        {{"bench", MODEL_ARGS, "--seconds", "x", "--bogus", NULL},
         "--seconds needs a number of seconds, not 'x'"},
    };
#undef MODEL_ARGS
    tu_run_result r;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        tu_run_argv(&r, cases[i].args);
        ck_assert_msg(r.code == 2, "case %zu: exit %d", i, r.code);
        ck_assert_msg(strncmp(r.err, "vit bench: ", 11) == 0 &&
                          strstr(r.err, cases[i].says),
                      "case %zu: %s", i, r.err);
        tu_run_free(&r);
    }
    /* --help: its own --threads, the decoding options' lines, and not the
     * internal --probe-memory. */
    tu_run(&r, "bench", "--help", NULL);
    ck_assert_int_eq(r.code, 0);
    ck_assert_str_eq(r.err, "");
    ck_assert_ptr_nonnull(strstr(r.out, "usage: vit bench --model DIR"));
    ck_assert_ptr_nonnull(strstr(r.out, "a thread count to time"));
    ck_assert_ptr_nonnull(strstr(r.out, "--no-exif-rotate"));
    ck_assert_ptr_nonnull(strstr(r.out, "(default 4)"));
    ck_assert_ptr_null(strstr(r.out, "threads each forward pass"));
    ck_assert_ptr_null(strstr(r.out, "probe-memory"));
    tu_run_free(&r);
}
END_TEST

/* What vit bench reports as memory: F32 weights are mapped and used in
 * place, BF16 ones widened into copies; the arena grows with max_batch. */
START_TEST(state_memory)
{
    const char *models[] = {FIXTURES "/vit_tiny", FIXTURES "/vit_bf16"};
    for (int i = 0; i < 2; i++) {
        size_t arena[2];
        for (int j = 0; j < 2; j++) {
            vit_options o = vit_options_default();
            o.max_batch = j ? 8 : 1;
            o.threads = 1;
            vit_model *m;
            vit_state *st;
            vit_error err;
            ck_assert_msg(vit_model_load(models[i], &o, &m, &err) == VIT_OK,
                          "%s", err.msg);
            ck_assert_int_eq(vit_state_new(m, &st, &err), VIT_OK);
            vit_memory mem;
            vit_state_memory(st, &mem);
            char path[256];
            snprintf(path, sizeof path, "%s/model.safetensors", models[i]);
            struct stat sb;
            ck_assert_int_eq(stat(path, &sb), 0);
            ck_assert_uint_eq(mem.weights_mapped, (size_t)sb.st_size);
            if (i == 0)
                ck_assert_uint_eq(mem.weights_copied, 0);
            else /* BF16 widened: twice the bytes, less the header */
                ck_assert_uint_gt(mem.weights_copied, mem.weights_mapped);
            arena[j] = mem.arena;
            vit_state_free(st);
            vit_model_free(m);
        }
        ck_assert_uint_gt(arena[0], 0);
        ck_assert_uint_gt(arena[1], 4 * arena[0]);
    }
}
END_TEST

/* The mapped pages the process holds: after a forward, every page of the
 * checkpoint (it reads every tensor), and no other mapping's. */
START_TEST(state_memory_resident)
{
    vit_options o = vit_options_default();
    o.max_batch = 2;
    o.threads = 1;
    vit_state *st;
    vit_error err;
    vit_model *m = tu_load_fixture("vit_tiny", &o, &st);
    vit_memory mem;
    vit_state_memory(st, &mem);
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t all = (mem.weights_mapped + page - 1) / page * page;
    ck_assert_uint_le(mem.weights_resident, all);
    vit_model_info info;
    vit_model_get_info(m, &info);
    float *px = calloc((size_t)2 * info.channels * info.image_h *
                           info.image_w,
                       sizeof *px);
    float *out = malloc((size_t)2 * info.num_labels * sizeof *out);
    ck_assert_ptr_nonnull(px);
    ck_assert_ptr_nonnull(out);
    ck_assert_int_eq(vit_classify_pixels(st, px, 2, 0, NULL, out, &err),
                     VIT_OK);
    vit_state_memory(st, &mem);
    ck_assert_uint_ge(mem.weights_resident, all - page);
    ck_assert_uint_le(mem.weights_resident, all);
    free(px);
    free(out);
    vit_state_free(st);
    vit_model_free(m);
}
END_TEST

Suite *bench_suite(void)
{
    Suite *s = suite_create("bench");
    TCase *tc = tcase_create("vit bench");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, bench_runs_and_profiles);
    tcase_add_test(tc, bench_dir_runs);
    tcase_add_test(tc, bench_usage);
    tcase_add_test(tc, state_memory);
    tcase_add_test(tc, state_memory_resident);
    suite_add_tcase(s, tc);
    return s;
}
