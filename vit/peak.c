/*
 * The float32 fused multiply-add peak of the path the CPU table runs, on
 * a number of threads: what no product can beat, and so the honest
 * reference for a forward pass's GFLOP/s (the throughput of one library's
 * GEMM at one shape is not: on some machines vit's own GEMM is several
 * times faster than it). Each thread runs independent chains of vector
 * FMAs, enough of them to cover the latency of two FMA units, and nothing
 * else; the threads start together and the slowest one's time counts.
 */
#include "vit/vit_impl.h"

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

/* Chains of 16 (AVX-512) or 8 (AVX2) lanes: 12 in flight. */
__attribute__((target("avx512f"), noinline)) static double fma_avx512(long n)
{
    __m512 a[12], m = _mm512_set1_ps(1.0000001f), c = _mm512_set1_ps(1e-9f);
    for (int i = 0; i < 12; i++)
        a[i] = _mm512_set1_ps((float)i);
    for (long k = 0; k < n; k++)
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++)
            a[i] = _mm512_fmadd_ps(a[i], m, c);
    __m512 s = a[0];
    for (int i = 1; i < 12; i++)
        s = _mm512_add_ps(s, a[i]);
    volatile float keep = _mm512_reduce_add_ps(s);
    (void)keep;
    return (double)n * 12 * 32;
}

__attribute__((target("avx2,fma"), noinline)) static double fma_avx2(long n)
{
    __m256 a[12], m = _mm256_set1_ps(1.0000001f), c = _mm256_set1_ps(1e-9f);
    for (int i = 0; i < 12; i++)
        a[i] = _mm256_set1_ps((float)i);
    for (long k = 0; k < n; k++)
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++)
            a[i] = _mm256_fmadd_ps(a[i], m, c);
    __m256 s = a[0];
    for (int i = 1; i < 12; i++)
        s = _mm256_add_ps(s, a[i]);
    float v[8];
    _mm256_storeu_ps(v, s);
    volatile float keep = v[0];
    (void)keep;
    return (double)n * 12 * 16;
}
#endif

/* The baseline: what the compiler makes of 12 independent multiply-add
 * chains of 4 floats (a multiply and an add each: 2 FLOP a lane). */
__attribute__((noinline)) static double fma_generic(long n)
{
    float a[12][4], m = 1.0000001f, c = 1e-9f;
    for (int i = 0; i < 12; i++)
        for (int j = 0; j < 4; j++)
            a[i][j] = (float)(i + j);
    for (long k = 0; k < n; k++)
        for (int i = 0; i < 12; i++)
            for (int j = 0; j < 4; j++)
                a[i][j] = a[i][j] * m + c;
    float s = 0;
    for (int i = 0; i < 12; i++)
        for (int j = 0; j < 4; j++)
            s += a[i][j];
    volatile float keep = s;
    (void)keep;
    return (double)n * 12 * 4 * 2;
}

static double fma_run(long n)
{
#if defined(__x86_64__) && defined(__GNUC__)
    if (cpu_avx512())
        return fma_avx512(n);
    if (cpu_avx2())
        return fma_avx2(n);
#endif
    return fma_generic(n);
}

typedef struct {
    long n;
    double flop;
    const _Atomic int *go;
} peak_arg;

static void *peak_thread(void *p)
{
    peak_arg *a = p;
    while (!atomic_load(a->go))
        ; /* all start together */
    a->flop = fma_run(a->n);
    return NULL;
}

/* FLOP/s of `threads` threads (as many as could be started) running n
 * iterations each. */
static double peak_once(int threads, long n)
{
    pthread_t t[256];
    peak_arg a[256];
    _Atomic int go = 0;
    if (threads > 256)
        threads = 256;
    int made = 0;
    for (; made < threads; made++) {
        a[made] = (peak_arg){n, 0, &go};
        if (pthread_create(&t[made], NULL, peak_thread, &a[made]) != 0)
            break;
    }
    double t0 = vit__now(), flop = 0;
    atomic_store(&go, 1);
    for (int i = 0; i < made; i++) {
        pthread_join(t[i], NULL);
        flop += a[i].flop;
    }
    double el = vit__now() - t0;
    return el > 0 ? flop / el : 0;
}

double vit_fma_peak_gflops(int threads)
{
    if (threads < 1)
        threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    /* Size one run to about 0.1 s on this machine, then the best of three
     * such runs: on a shared machine the best is the least disturbed. */
    long n = 100000;
    double el, t;
    do {
        t = vit__now();
        fma_run(n);
        el = vit__now() - t;
        if (el < 0.02)
            n *= 4;
    } while (el < 0.02);
    n = (long)((double)n * 0.1 / el) + 1;
    double best = 0;
    for (int r = 0; r < 3; r++) {
        double g = peak_once(threads, n);
        best = g > best ? g : best;
    }
    return best / 1e9;
}
