/*
 * CPU feature detection from CPUID, with the operating system's consent
 * read from XCR0 (a CPU with AVX-512 under a kernel that does not save its
 * registers cannot use it), once per process.
 */
#include "cpu/cpu.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define CPU_X86 1
#endif

static cpu_info info;
static char isa_error[160];
static pthread_once_t once = PTHREAD_ONCE_INIT;

#ifdef CPU_X86
static unsigned long long xgetbv0(void)
{
    unsigned int lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

static void detect(cpu_info *c)
{
    unsigned int a, b, cx, d;
    if (!__get_cpuid(1, &a, &b, &cx, &d))
        return;
    c->sse3 = (cx >> 0) & 1;
    c->ssse3 = (cx >> 9) & 1;
    int osxsave = (cx >> 27) & 1;
    unsigned long long xcr0 = osxsave ? xgetbv0() : 0;
    int os_avx = (xcr0 & 0x6) == 0x6;
    int os_avx512 = os_avx && (xcr0 & 0xe0) == 0xe0;
    int os_amx = (xcr0 & 0x60000) == 0x60000;
    c->avx = os_avx && ((cx >> 28) & 1);
    c->fma = c->avx && ((cx >> 12) & 1);
    c->f16c = c->avx && ((cx >> 29) & 1);
    unsigned int max = __get_cpuid_max(0, NULL);
    if (max < 7)
        return;
    __cpuid_count(7, 0, a, b, cx, d);
    c->avx2 = c->avx && ((b >> 5) & 1);
    c->avx512f = os_avx512 && ((b >> 16) & 1);
    c->avx512dq = c->avx512f && ((b >> 17) & 1);
    c->avx512bw = c->avx512f && ((b >> 30) & 1);
    c->avx512vl = c->avx512f && ((b >> 31) & 1);
    c->avx512vnni = c->avx512f && ((cx >> 11) & 1);
    c->amx_bf16 = os_amx && ((d >> 22) & 1);
    c->amx_tile = os_amx && ((d >> 24) & 1);
    c->amx_int8 = os_amx && ((d >> 25) & 1);
    unsigned int sub = a;
    if (sub >= 1) {
        __cpuid_count(7, 1, a, b, cx, d);
        c->avxvnni = c->avx2 && ((a >> 4) & 1);
        c->avx512bf16 = c->avx512f && ((a >> 5) & 1);
    }
}
#else
static void detect(cpu_info *c) { (void)c; }
#endif

static void init(void)
{
    cpu_info *c = &info;
    detect(c);
    c->best = CPU_ISA_GENERIC;
    if (c->avx2 && c->fma)
        c->best = CPU_ISA_AVX2;
    if (c->best == CPU_ISA_AVX2 && c->avx512f && c->avx512bw &&
        c->avx512vl && c->avx512dq)
        c->best = CPU_ISA_AVX512;
    if (c->best == CPU_ISA_AVX512 && c->amx_tile && (c->amx_bf16 || c->amx_int8))
        c->best = CPU_ISA_AMX;
    c->isa = c->best;
    const char *e = getenv("VIT_ISA");
    if (e && *e) {
        int cap = -1;
        for (int i = CPU_ISA_GENERIC; i <= CPU_ISA_AMX; i++)
            if (strcmp(e, cpu_isa_name((cpu_isa)i)) == 0)
                cap = i;
        if (cap < 0)
            snprintf(isa_error, sizeof isa_error,
                     "VIT_ISA=%.40s is not a path; it is one of generic, "
                     "avx2, avx512 and amx",
                     e);
        else if ((cpu_isa)cap < c->isa)
            c->isa = (cpu_isa)cap;
    }
}

const cpu_info *cpu_get(void)
{
    pthread_once(&once, init);
    return &info;
}

int cpu_avx2(void)
{
    const cpu_info *c = cpu_get();
    return c->isa >= CPU_ISA_AVX2;
}

int cpu_avx512(void)
{
    const cpu_info *c = cpu_get();
    return c->isa >= CPU_ISA_AVX512;
}

int cpu_avx512vnni(void) { return cpu_avx512() && cpu_get()->avx512vnni; }

int cpu_avxvnni(void) { return cpu_avx2() && cpu_get()->avxvnni; }

int cpu_bf16(void)
{
    const cpu_info *c = cpu_get();
    return (c->isa >= CPU_ISA_AVX512 && c->avx512bf16) ||
           (c->isa >= CPU_ISA_AMX && c->amx_bf16);
}

int cpu_amx_int8(void)
{
    const cpu_info *c = cpu_get();
    return c->isa >= CPU_ISA_AMX && c->amx_int8;
}

const char *cpu_isa_name(cpu_isa isa)
{
    switch (isa) {
    case CPU_ISA_AVX2: return "avx2";
    case CPU_ISA_AVX512: return "avx512";
    case CPU_ISA_AMX: return "amx";
    default: return "generic";
    }
}

const char *cpu_isa_error(void)
{
    cpu_get();
    return isa_error[0] ? isa_error : NULL;
}

void cpu_describe(char *buf, unsigned long n)
{
    const cpu_info *c = cpu_get();
    static const struct {
        const char *name;
        size_t off;
    } f[] = {
#define F(x) {#x, offsetof(cpu_info, x)}
        F(avx2), F(fma), F(f16c), F(avx512f), F(avx512bw), F(avx512vl),
        F(avx512dq), F(avx512vnni), F(avx512bf16), F(avxvnni), F(amx_tile),
        F(amx_bf16), F(amx_int8),
#undef F
    };
    if (!buf || n == 0)
        return;
    size_t len = (size_t)snprintf(buf, n, "%s (", cpu_isa_name(c->isa));
    int any = 0;
    for (size_t i = 0; i < sizeof f / sizeof *f && len < n; i++)
        if (*(const int *)((const char *)c + f[i].off)) {
            len += (size_t)snprintf(buf + len, n - len, "%s%s", any ? " " : "",
                                    f[i].name);
            any = 1;
        }
    if (len < n && c->isa < c->best)
        len += (size_t)snprintf(buf + len, n - len,
                                "%sthe CPU can run %s; capped by VIT_ISA",
                                any ? "; " : "", cpu_isa_name(c->best));
    else if (len < n && !any)
        len += (size_t)snprintf(buf + len, n - len, "no SIMD features used");
    if (len < n)
        snprintf(buf + len, n - len, ")");
}
