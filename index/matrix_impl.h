/*
 * What index/matrix.c and index/kernels.c share: the matrix itself and
 * the kernels that read and write its rows.
 */
#ifndef IDX_MATRIX_IMPL_H
#define IDX_MATRIX_IMPL_H

#include "index/index.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__x86_64__) || defined(__i386__)
#define IDX_X86 1
#endif

struct idx_matrix {
    int dim;
    idx_precision prec;
    int keep_f32;
    pthread_rwlock_t lock;
    size_t n, cap;
    void *data;       /* (cap, dim) in prec: float, uint16_t or int8_t */
    float *scale;     /* int8: (cap) per-row scale, value = q * scale */
    float *f32;       /* keep_f32 with fp16 / int8: (cap, dim) fp32 */
    int64_t *ids;     /* (cap) */
    char **keys;      /* (cap) owned strings */
    /* id -> row, open addressing with linear probing. */
    int64_t *map_id;  /* (map_cap) EMPTY_ID when free */
    size_t *map_row;  /* (map_cap) */
    size_t map_cap;   /* a power of two, at least 2n */
};

/* Whether the AVX2 kernels run: the CPU has AVX2, FMA and F16C and
 * IDX_NO_SIMD=1 is not set. */
int idx__use_simd(void);
/* Scores of rows [r0, r0 + n) against q into out (n). q16 / qs: the
 * query quantized for the int8 kernel (idx__quantize_query), or NULL. */
void idx__dot_rows(const idx_matrix *m, float *out, size_t r0, size_t n,
                   const float *q, const int16_t *q16, float qs, int simd);
/* Rows [r0, r0 + n) of an fp16 or int8 matrix as fp32 into out (n, d). */
void idx__rows_f32(const idx_matrix *m, float *out, size_t r0, size_t n,
                   int simd);
/* Writes one fp32 vector into row r in the matrix's precision. */
void idx__store_row(idx_matrix *m, size_t r, const float *v);
/* The query as int16 for the int8 kernel; returns its scale. */
float idx__quantize_query(int16_t *out, const float *q, int d);
/* One fp32 dot product, by the kernel a search uses. */
float idx__dot_f32_exact(const float *a, const float *b, int d, int simd);

#endif
