/*
 * `vit bench` on the tiny fixture model: it runs every requested thread
 * count and batch size, prints the sgemm ratio and, with --profile, a row
 * per kind of op whose shares add up to 100%; and it refuses bad options.
 * What it measures is not checked here (timings are for benchmarks).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

START_TEST(bench_runs_and_profiles)
{
    tu_run_result r;
    tu_run(&r, "bench", "--model", FIXTURES "/vit_tiny", "--batch", "1",
           "--batch", "3", "--threads", "1", "--threads", "2", "--profile",
           "--seconds", "0.05", NULL);
    ck_assert_msg(r.code == 0, "%s", r.err);
    ck_assert_ptr_nonnull(strstr(r.out, "1 threads:"));
    ck_assert_ptr_nonnull(strstr(r.out, "2 threads:"));
    ck_assert_ptr_nonnull(strstr(r.out, "sgemm peak"));
    ck_assert_ptr_nonnull(strstr(r.out, "peak resident memory"));
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

Suite *bench_suite(void)
{
    Suite *s = suite_create("bench");
    TCase *tc = tcase_create("vit bench");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, bench_runs_and_profiles);
    suite_add_tcase(s, tc);
    return s;
}
