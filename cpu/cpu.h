/*
 * The one CPU table: the x86 features every SIMD kernel of vit is chosen
 * from (vit/, imgio/, index/), detected once, and the path they may use,
 * capped by the environment variable VIT_ISA. It is a leaf: it depends on
 * nothing else here, and everything may include it.
 *
 * VIT_ISA=generic|avx2|avx512|amx caps the path at that level (never above
 * what the CPU has), so that one machine can run and test every path below
 * its best. Read once, at the first call; an unknown value runs the best
 * path and is reported by cpu_isa_error (vit_model_load refuses to load,
 * naming it).
 */
#ifndef VIT_CPU_H
#define VIT_CPU_H

typedef enum {
    CPU_ISA_GENERIC = 0, /* portable C (what the compiler makes of it) */
    CPU_ISA_AVX2 = 1,    /* AVX2 + FMA (+ F16C) */
    CPU_ISA_AVX512 = 2,  /* AVX-512 F, BW, VL, DQ */
    CPU_ISA_AMX = 3,     /* AMX tiles (BF16, INT8) with AVX-512 */
} cpu_isa;

typedef struct {
    /* What the CPU and the operating system support. */
    int sse3, ssse3, avx, avx2, fma, f16c;
    int avx512f, avx512bw, avx512vl, avx512dq, avx512vnni, avx512bf16;
    int avxvnni;
    int amx_tile, amx_bf16, amx_int8;
    cpu_isa best; /* the best path the features allow */
    cpu_isa isa;  /* the path to run: best, capped by VIT_ISA */
} cpu_info;

/* The table, detected on first use (thread-safe); never NULL. */
const cpu_info *cpu_get(void);

/* Shorthands for the kernels: the path allows the level and the CPU has
 * what its kernel needs. */
int cpu_avx2(void);        /* AVX2 + FMA, path >= avx2 */
int cpu_avx512(void);      /* AVX-512 F/BW/VL/DQ, path >= avx512 */
int cpu_avx512vnni(void);  /* and VNNI */
int cpu_avxvnni(void);     /* AVX-VNNI (256-bit vpdpbusd), path >= avx2 */
/* bfloat16 products in hardware: AVX512-BF16 with path >= avx512, or
 * AMX-BF16 with path amx. */
int cpu_bf16(void);
/* AMX-INT8 with path amx. */
int cpu_amx_int8(void);

/* A path's name ("generic", "avx2", "avx512", "amx"). */
const char *cpu_isa_name(cpu_isa isa);

/* NULL, or a sentence saying VIT_ISA holds an unknown value. */
const char *cpu_isa_error(void);

/* "avx512 (avx2 fma f16c avx512f ... ; capped by VIT_ISA=avx512)" into buf
 * (always NUL-terminated). */
void cpu_describe(char *buf, unsigned long n);

#endif
