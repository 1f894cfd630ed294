/*
 * Private declarations shared by the files of vit/: the model and state
 * structs, the checkpoint loader, the kernels and the encoder. Nothing here
 * is API; tests include it to check internals against the reference.
 */
#ifndef VIT_IMPL_H
#define VIT_IMPL_H

#include "vit/vit.h"
#include "imgio/imgio.h"
#include "text/text.h"

#include <jansson.h>

#include "cpu/cpu.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Compiled for AVX-512, AVX2 and the baseline, picked at run time (x86-64;
 * elsewhere the baseline alone). */
#if defined(__x86_64__) && defined(__GNUC__)
#define VIT_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define VIT_CLONES
#endif

/* A void function compiled from one body for each path of the CPU table
 * (AVX-512, AVX2 + FMA, the baseline), the copy picked at each call by
 * cpu/cpu.h, so that VIT_ISA caps it as it caps every kernel:
 *
 *     static VIT_BODY void f_body(float *x, int n) { ... }
 *     VIT_PATHS(f, (float *x, int n), (x, n))
 *     void f(float *x, int n) { VIT_PICK(f, (x, n)); }
 *
 * Elsewhere than x86-64 the three copies are the same. */
#define VIT_BODY inline __attribute__((always_inline))
#if defined(__x86_64__) && defined(__GNUC__)
#define VIT_PATHS(name, params, args)                                       \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")))  \
    static void name##_avx512 params { name##_body args; }                  \
    __attribute__((target("avx2,fma"))) static void name##_avx2 params      \
    {                                                                       \
        name##_body args;                                                   \
    }                                                                       \
    static void name##_generic params { name##_body args; }
#define VIT_PICK(name, args)                                                \
    (cpu_avx512() ? name##_avx512 args                                      \
                  : cpu_avx2() ? name##_avx2 args : name##_generic args)
#else
#define VIT_PATHS(name, params, args)                                       \
    static void name##_generic params { name##_body args; }
#define VIT_PICK(name, args) name##_generic args
#endif

#include "vit/fail.h"


/* ---- checkpoint weights (safetensors.c) ---- */

#define VIT_MAX_DIMS 8

typedef enum { VIT_DT_F32, VIT_DT_F16, VIT_DT_BF16, VIT_DT_OTHER } vit__dtype;

typedef struct {
    char *name;
    vit__dtype dtype;
    int ndim;
    int64_t shape[VIT_MAX_DIMS];
    uint64_t count;       /* elements */
    const uint8_t *data;  /* inside a mapping */
    size_t nbytes;
} vit__tensor;

typedef struct {
    void *addr;
    size_t len;
} vit__mapping;

/* All tensors of a checkpoint (one file or every shard), sorted by name. */
typedef struct {
    vit__tensor *tensors;
    size_t ntensors;
    vit__mapping *maps;
    size_t nmaps;
    float **owned;  /* float32 copies of F16/BF16/unaligned tensors */
    size_t nowned;
    size_t dropped; /* mapped bytes given back by vit__weights_release */
} vit__weights;

/* Maps and validates DIR/model.safetensors or the shards its index names. */
vit_status vit__weights_open(const char *dir, vit__weights **out,
                             vit_error *err);
/* Maps and validates the one safetensors file at `path`. */
vit_status vit__weights_open_file(const char *path, vit__weights **out,
                                  vit_error *err);
/* Adds a tensor `name` of `dtype` (F32, F16 or BF16) and `shape` whose
 * elements are at `data`: inside a tensor w holds (a view of part of it)
 * or in floats w owns (vit__weights_alloc). For checkpoints named other
 * than the loader reads them (open_clip's: vit/openclip.c). */
vit_status vit__weights_add(vit__weights *w, const char *name,
                            vit__dtype dtype, int ndim, const int64_t *shape,
                            const void *data, vit_error *err);
void vit__weights_free(vit__weights *w);
const vit__tensor *vit__weights_find(const vit__weights *w, const char *name);

/* The float32 data of tensor `name`, which must have exactly `shape`: in
 * place for aligned F32, else a copy the weights own. NULL with `err` set
 * when missing, misshapen or of another dtype. */
const float *vit__weights_get(vit__weights *w, const char *name, int ndim,
                              const int64_t *shape, vit_error *err);
/* n floats the weights own (freed with them, or by vit__weights_release):
 * for tensors the loader derives from the checkpoint's. NULL with `err`
 * set when out of memory. */
float *vit__weights_alloc(vit__weights *w, size_t n, vit_error *err);
/* Gives back the memory behind `data` (from vit__weights_get), which must
 * not be read again: a copy is freed, mapped pages are dropped. */
void vit__weights_release(vit__weights *w, const float *data);

/* ---- kernels (ops.c) ---- */

typedef enum {
    VIT_ACT_GELU,       /* exact, erf: "gelu" */
    VIT_ACT_GELU_TANH,  /* "gelu_new", "gelu_pytorch_tanh", "gelu_fast" */
    VIT_ACT_QUICK_GELU, /* x * sigmoid(1.702 x): OpenAI CLIP */
    VIT_ACT_SILU,
    VIT_ACT_RELU,
    VIT_ACT_TANH,
} vit__act;

/* Maps a config's hidden_act string; -1 when unknown. */
int vit__act_parse(const char *name);

void vit__linear(float *out, const float *in, const float *w, const float *b,
                 int M, int N, int K);
struct vit__pool;
/* vit__linear split among the threads of `pool` (NULL: the caller
 * alone), the rows read in place: for products of many rows outside the
 * encoder. */
void vit__pool_linear(struct vit__pool *pool, float *out, const float *in,
                      const float *w, const float *b, int M, int N, int K);
void vit__layernorm(float *out, const float *in, const float *w,
                    const float *b, int M, int C, float eps);
void vit__activation(float *x, size_t n, vit__act act);
void vit__softmax(float *x, int rows, int cols);
/* One (sequence, head): q, k, v, out (T, dh) with row stride ld. Both
 * products run on vit__sgemm (one chain of FMAs per output, as the
 * encoder's other products), on copies of the head laid out as it reads
 * them; or, given a oneDNN context bc (the bf16 mode on a CPU with
 * bfloat16), in bfloat16 on oneDNN, on pool thread w's products. `work`
 * holds vit__attention_floats(T, dh) floats, the (T, T) scores first. */
struct vit__prof_s;
typedef struct vit__bctx vit__bctx;
size_t vit__attention_floats(int T, int dh);
void vit__attention_head(float *out, const float *q, const float *k,
                         const float *v, float *work, int T, int ld, int dh,
                         int causal, int nkeys, vit__bctx *bc, int w,
                         struct vit__prof_s *prof);
/* Every head of B sequences, (B, T, D) each, one after another, on pool
 * thread 0's products when bc; work: vit__attention_floats(T, D / H). */
void vit__attention(float *out, const float *q, const float *k,
                    const float *v, float *work, int B, int T, int D, int H,
                    int causal, vit__bctx *bc);

/* ---- the int8 linear layer (qgemm.c) ---- */

#define VIT_QMR 8  /* rows of the kernel's tile */
#define VIT_QNR 48 /* columns: three vectors of 16 int32 lanes */

/* A weight matrix quantized per output channel to int8 and packed: panel
 * n / QNR holds Kp / 4 groups of QNR lanes x 4 bytes. */
/* A weight matrix on oneDNN (bgemm.c). */
typedef struct vit__bmat vit__bmat;

typedef struct {
    int N, K, Np, Kp;
    int8_t *w;       /* or NULL, the weights being in bm */
    vit__bmat *bm;   /* the (Np, Kp) weights on oneDNN, or NULL */
    float *scale;    /* (Np) w[n][k] ~ scale[n] * q[n][k] */
    int32_t *colsum; /* (Np) sum over k of q[n][k] */
    float *bias;     /* (Np) or NULL */
} vit__qweight;

/* Where a product's columns go: column n to out[n / seg] at row stride ld,
 * column n % seg; stored, or added to what is there. Fused projections
 * (query, key and value) write three matrices from one product. */
typedef struct {
    float *out[3];
    int seg, ld, accumulate;
    int act;       /* 1 + a vit__act applied to stored outputs; 0: none */
    float *lo, *hi; /* per row of the product: lowered / raised to its
                       outputs' least / greatest (after act), or NULL */
} vit__qout;

/* Quantizes and packs `nparts` (Npart, K) matrices stacked as one (nparts *
 * Npart, K) weight, each with its bias (biases or its entries may be NULL). */
vit_status vit__qweight_pack(vit__qweight *q, const float *const *parts,
                             const float *const *biases, int nparts,
                             int Npart, int K, vit_error *err);
void vit__qweight_free(vit__qweight *q);
/* Bytes per quantized activation row of K features. */
size_t vit__qact_stride(int K);
/* in (M, K) -> a (M rows of vit__qact_stride(K) bytes), per row scale and
 * zero point. lo, hi: each row's least and greatest value, with 0 between
 * (a vit__qout's, from the product that made `in`), or NULL to find them. */
void vit__quantize_rows(uint8_t *a, float *scale, int32_t *zero,
                        const float *in, int M, int K, const float *lo,
                        const float *hi);
/* The product of M quantized rows and q, into o (q->w: vit's kernels). */
void vit__qlinear(const vit__qout *o, const uint8_t *a, const float *as,
                  const int32_t *az, const vit__qweight *q, int M);
/* Moves q's weights onto oneDNN (q->bm; q->w is freed), whose int32 sums
 * vit__qlinear_sums then scales back. */
vit_status vit__qweight_onednn(vit__qweight *q, vit_error *err);
/* The same product from its int32 sums c (M, q->Np, row stride ldc) of
 * the quantized rows and q's weights: scaled back, biased, stored or added
 * into o, the bits vit__qlinear gives. */
void vit__qlinear_sums(const vit__qout *o, const int32_t *c, size_t ldc,
                       const float *as, const int32_t *az,
                       const vit__qweight *q, int M);
/* The int8 kernels, in the order they are preferred (the last the CPU
 * table allows runs); each gives the same bits. */
enum {
    VIT_QPATH_PORTABLE,
    VIT_QPATH_AVX2,       /* vpmaddwd on int16-widened bytes */
    VIT_QPATH_AVXVNNI,    /* 256-bit vpdpbusd */
    VIT_QPATH_AVX512VNNI, /* 512-bit vpdpbusd */
    VIT_QPATH_COUNT
};
/* Tests: run path p (a VIT_QPATH_) from now on, or the CPU table's choice
 * again (p < 0). 0, changing nothing, where the CPU (under VIT_ISA) cannot
 * run p. */
int vit__qkernel_force_isa(int p);

/* ---- the bfloat16 linear layer through oneDNN (bgemm.c) ---- */

/* A bfloat16 number, as its bits: the upper half of a float32's. */
typedef uint16_t vit__bf16;

/* f rounded to the nearest bfloat16, ties to even (NaN stays NaN); the
 * rounding PyTorch's .to(torch.bfloat16) does. On the bits: adding 0x7fff
 * plus the lowest kept bit carries into the kept half exactly when the
 * dropped half is above half an ulp, or at half with the kept half odd. A
 * NaN is kept a (quiet) NaN, which the addition could otherwise carry into
 * infinity. */
static inline vit__bf16 vit__bf16_round1(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    uint32_t nan = (u >> 16) | 0x40u;
    return (vit__bf16)((u & 0x7fffffffu) > 0x7f800000u ? nan : r);
}
/* in (n floats) -> out, each rounded by vit__bf16_round1. */
void vit__bf16_round(vit__bf16 *out, const float *in, size_t n);
/* x (n floats) rounded to bfloat16 and widened back, in place. */
void vit__bf16_round_f32(float *x, size_t n);
/* vit__softmax of the rows of x times scale (> 0), each written rounded
 * to bfloat16 into out (rows cols apart) rather than back into x. */
void vit__softmax_bf16(float *x, int rows, int cols, float scale,
                       vit__bf16 *out);

/* vit__bmat (declared above): an nn.Linear weight (N, K) in bfloat16, in
 * the layout oneDNN's matrix product asks for, with its float32 bias (N)
 * or NULL; or an int8 one for the int8 layer's sums. Opaque: only bgemm.c
 * includes oneDNN's header. */

/* Whether this process's bf16 products run through oneDNN: the CPU table
 * allows bfloat16 (cpu_bf16) and the tests' hook does not forbid it. */
int vit__bf16_onednn(void);
/* Tests: 1 makes models loaded from now on widen their bfloat16 weights
 * for the float32 kernel even where oneDNN could run; 0 undoes it. */
void vit__bf16_force_widen(int on);

/* w (N, K) rounded to bfloat16 and packed; bias (N) is kept by pointer,
 * so it must outlive the matrix. */
vit_status vit__bmat_pack(vit__bmat **out, const float *w, const float *bias,
                          int N, int K, vit_error *err);
/* An int8 weight for the int8 layer's sums: w (N, K) row-major, int8. */
vit_status vit__bmat_pack_int8(vit__bmat **out, const int8_t *w, int N,
                               int K, vit_error *err);
void vit__bmat_free(vit__bmat *b);
size_t vit__bmat_bytes(const vit__bmat *b);
/* Whether models loaded now run their int8 products' sums through oneDNN
 * (the CPU has AMX-INT8 and VIT_ISA allows amx). Tests: 1 forces it where
 * the CPU has AVX-512 VNNI, 0 forbids it, -1 goes back to the CPU's
 * choice. */
int vit__int8_onednn(void);
void vit__int8_force_onednn(int on);

/* Per-thread oneDNN state for a vit_state's pool (n threads): a stream and
 * the matrix products made so far, one per shape, each run by the thread
 * that made it, on that thread alone (typedef above). */
vit_status vit__bctx_new(vit__bctx **out, int n, vit_error *err);
void vit__bctx_free(vit__bctx *c);
/* dst (M, b's N, row stride N) = or += a (M, b's K, row stride K) @ b^T +
 * bias, on pool thread w. A failure (oneDNN out of memory, say) is kept
 * for vit__bctx_status: the products return nothing. */
void vit__bmat_run(vit__bctx *c, int w, const vit__bmat *b,
                   const vit__bf16 *a, int M, float *dst, int accumulate);
/* dst (M, b's N) in bfloat16 = act(a @ b^T + bias), the activation
 * applied by oneDNN to the float32 sums before the rounding: the MLP's
 * first product, whose output is the second's bfloat16 input. */
void vit__bmat_run_act(vit__bctx *c, int w, const vit__bmat *b,
                       const vit__bf16 *a, int M, vit__bf16 *dst,
                       vit__act act);
/* dst (M, b's N) = the int32 sums of a (M, b's K, rows lda bytes apart)
 * times b^T, on pool thread w; failures as vit__bmat_run. */
void vit__bmat_run_int8(vit__bctx *c, int w, const vit__bmat *b,
                        const uint8_t *a, size_t lda, int M, int32_t *dst);
/* dst (M, N, row stride N) = a (M, K) @ b on pool thread w, both bf16
 * activations rather than packed weights (attention's products): b is
 * (K, N) row-major, or with b_nk its transpose (N, K) row-major. Failures
 * as vit__bmat_run. */
void vit__bact_run(vit__bctx *c, int w, const vit__bf16 *a,
                   const vit__bf16 *b, int M, int K, int N, int b_nk,
                   float *dst);
/* VIT_OK, or the first failure since the last call (which clears it). */
vit_status vit__bctx_status(vit__bctx *c, vit_error *err);

/* ---- the float32 linear layer (sgemm.c) ---- */

#define VIT_SMR 8  /* weight rows (output features) of the kernel's tile */
#define VIT_SNR 48 /* activation rows: three vectors of 16 float lanes */

/* A float32 product's columns: column n is row n % seg of the nn.Linear
 * weight w[n / seg], (seg, K) read in place, plus b[n / seg][n % seg] (b[i]
 * may be NULL), and goes to out[n / seg] column n % seg at row stride ld,
 * stored or added to what is there. Fused projections (query, key and
 * value) are one product of three segments. */
typedef struct {
    const float *w[3], *b[3];
    float *out[3];
    int seg, ld, accumulate;
    int act; /* 1 + a vit__act applied to the stored outputs (products
                that are not accumulated); 0: none */
    /* Where w16[i] is set, segment i's weights are these bfloat16 ones
     * instead of w[i]: widened to float32 (exactly) a block of rows at a
     * time inside the product, so the outputs are those of their float32
     * widening, at half its memory. */
    const vit__bf16 *w16[3];
} vit__sgemm_op;

/* Floats of packing scratch vit__sgemm needs for M rows of K features (or
 * fewer rows). */
size_t vit__sgemm_pack_floats(int M, int K);
/* Columns [n0, n1) of the product of in (M, K) and op's weights. pack:
 * vit__sgemm_pack_floats(M, K) floats of the calling thread's own, or NULL
 * (any M; the rows are then read in place, at some cost in speed). Each
 * output is the same chain of FMAs along k on every path, so its bits do
 * not depend on M, on the rows or columns asked, nor on the path. */
void vit__sgemm(const vit__sgemm_op *op, const float *in, int M, int K,
                int n0, int n1, float *pack);
/* The path vit__sgemm runs, a cpu_isa: CPU_ISA_AVX512 or CPU_ISA_AVX2
 * (its SIMD kernels), or CPU_ISA_GENERIC (plain C). */
int vit__sgemm_isa(void);
/* Tests: run the path isa (a cpu_isa; never above what the CPU table
 * allows), or the table's own again (-1); returns the path that will run.
 * Not while products are running. */
int vit__sgemm_force_isa(int isa);

/* Thread w of n's cell of a float32 product of M rows and N columns: rows
 * [r0, r1), columns [c0, c1) in whole tiles of VIT_SMR. Thin products
 * split columns too, so that each thread reads only its share of the
 * weights (encoder.c). */
void vit__grid_cell(int M, int N, int w, int n, int *r0, int *r1, int *c0,
                    int *c1);

/* ---- the thread pool (pool.c) ---- */

typedef struct vit__pool vit__pool;
/* Runs as worker `index` of `n`; each splits the work by its index. */
typedef void (*vit__pool_fn)(void *ctx, int index, int n);

/* n threads including the caller; NULL when out of memory or threads. */
vit__pool *vit__pool_new(int n);
void vit__pool_free(vit__pool *p);
int vit__pool_size(const vit__pool *p);
/* Runs fn on every thread of the pool (NULL: the caller alone) and waits
 * for all of them. */
void vit__pool_run(vit__pool *p, vit__pool_fn fn, void *ctx);
/* The end of a forward pass: the workers stop spinning for the next round
 * soon (it may be a while), until the next vit__pool_run. */
void vit__pool_rest(vit__pool *p);
/* The index-th of n contiguous near-equal parts of [0, total). */
void vit__split(int total, int index, int n, int *begin, int *end);

/* ---- the encoder stack (encoder.c) ---- */

typedef struct {
    const float *ln1_w, *ln1_b;          /* (D) */
    const float *wq, *wk, *wv, *wo;      /* (D, D) */
    const float *bq, *bk, *bv;           /* (D), NULL without qkv bias */
    const float *bo;                     /* (D) */
    const float *ln2_w, *ln2_b;          /* (D) */
    const float *w1, *b1;                /* (F, D), (F) */
    const float *w2, *b2;                /* (D, F), (D) */
    /* qk-norm (timm's qk_norm): layernorms of each head's query and key,
     * (D / H) each, or NULL for none. */
    const float *qn_w, *qn_b, *kn_w, *kn_b;
    /* VIT_PRECISION_INT8: the four products in int8; else zeroed. */
    vit__qweight qkv, o, fc1, fc2;
    /* VIT_PRECISION_BF16 through oneDNN: q, k, v, out, fc1, fc2 (VIT_BM_);
     * else NULL. */
    vit__bmat *bm[6];
    /* VIT_PRECISION_BF16 without oneDNN: the rounded weights of q, k, v,
     * out, fc1, fc2 (VIT_BM_) as bfloat16, which the float32 product
     * widens a block at a time (wq ... w2 are then NULL); else NULL. */
    vit__bf16 *w16[6];
} vit__layer;

enum { VIT_BM_Q, VIT_BM_K, VIT_BM_V, VIT_BM_O, VIT_BM_FC1, VIT_BM_FC2 };

typedef struct {
    int D, H, F, L;  /* F: MLP (intermediate) size */
    float eps;
    vit__act act;
    int swiglu;          /* the MLP is SwiGLU (DINOv2 giant): fc1 gives 2F
                            outputs, silu(the first F) times the other F
                            is fc2's input; act is unused */
    int int8;            /* the layers' products run in int8 */
    int int8_onednn;     /* ... their sums through oneDNN (the layers'
                            vit__qweight bm) */
    int bf16;            /* ... in bfloat16 through oneDNN */
    int bf16_wide;       /* ... on bfloat16-rounded weights widened to
                            float32, in the float32 kernel */
    vit__layer *layers;  /* L of them */
} vit__encoder;

/* What an encoder's products need of the scratch (vit__scratch_floats). */
enum { VIT_MODE_F32, VIT_MODE_INT8, VIT_MODE_BF16 };
static inline int vit__encoder_mode(const vit__encoder *e)
{
    return e->int8 ? VIT_MODE_INT8 : e->bf16 ? VIT_MODE_BF16 : VIT_MODE_F32;
}

/* printf formats taking (prefix, layer index) for each tensor of a layer:
 * how a model family names its encoder weights. */
typedef struct {
    const char *ln1_w, *ln1_b, *wq, *bq, *wk, *bk, *wv, *bv, *wo, *bo;
    const char *ln2_w, *ln2_b, *w1, *b1, *w2, *b2;
    /* Layer scale (DINOv2): (D) gains of the attention's and the MLP's
     * outputs before each residual sum, or NULL for none. */
    const char *ls1, *ls2;
    /* Query, key and value in one (3D, D) weight and (3D) bias (timm's
     * qkv, open_clip's in_proj), or NULL: separate wq, wk, wv. */
    const char *wqkv, *bqkv;
    /* qk-norm's (D / H) layernorms of the query and key, or NULL. */
    const char *qn_w, *qn_b, *kn_w, *kn_b;
} vit__layer_names;

/* Per-thread profile counters, by vit_profile_entry kind. */
enum {
    VIT_PROF_PATCH,
    VIT_PROF_LAYERNORM,
    VIT_PROF_MATMUL,
    VIT_PROF_ATTENTION,
    VIT_PROF_SOFTMAX,
    VIT_PROF_ACTIVATION,
    VIT_PROF_QUANTIZE,
    VIT_PROF_N
};
typedef struct vit__prof_s {
    double sec[VIT_PROF_N], flop[VIT_PROF_N];
    long calls[VIT_PROF_N];
    char pad[64]; /* threads' counters on separate cache lines */
} vit__prof;

double vit__now(void);

/* Times `stmt` as op `kind` of worker `w` with `flops` of work when the
 * scratch is profiling. */
#define VIT_PROF(s, w, kind, flops, stmt)                                   \
    do {                                                                    \
        if ((s)->prof) {                                                    \
            double t0_ = vit__now();                                        \
            stmt;                                                           \
            vit__prof *p_ = &(s)->prof[w];                                  \
            p_->sec[kind] += vit__now() - t0_;                              \
            p_->flop[kind] += (double)(flops);                              \
            p_->calls[kind]++;                                              \
        } else {                                                            \
            stmt;                                                           \
        }                                                                   \
    } while (0)

/* Activation scratch for one forward of B sequences of T tokens, and the
 * threads that run it. */
typedef struct {
    float *xn, *q, *k, *v, *ctx;  /* (B, T, D) each */
    float *ff;                    /* (B, T, F) */
    float *fg;                    /* SwiGLU: (B, T, 2F) fc1's outputs,
                                     gate then up; else NULL */
    float *scores;                /* per thread, attn floats: the (T, T)
                                     scores and the heads' copies
                                     (vit__attention_floats), or int8's
                                     sums from oneDNN; then float32's
                                     packing scratch */
    size_t attn;                  /* floats of each thread's block there */
    uint8_t *qa;                  /* int8 mode: (B * T) quantized rows of
                                     up to max(D, F) features, qa_row bytes
                                     apart; a thread quantizes rows r0.. of
                                     any width K from qa + r0 * qa_row,
                                     vit__qact_stride(K) apart */
    size_t qa_row;
    float *qs;                    /* (B * T) their scales */
    int32_t *qz;                  /* (B * T) their zero points */
    float *qlo, *qhi;             /* (B * T) ranges of the MLP's rows */
    vit__bf16 *ba;                /* bf16 mode: (B * T) rows of up to
                                     ba_row = max(D, F) features; a thread
                                     writes the rows r0.. of a product, K
                                     apart, from ba + r0 * ba_row */
    size_t ba_row;
    vit__bctx *bctx;              /* bf16 mode, or int8's sums on oneDNN:
                                     the pool's oneDNN state */
    vit__pool *pool;              /* NULL: the caller alone */
    vit__prof *prof;              /* one per thread, NULL: not profiling */
} vit__scratch;

/* mode: a VIT_MODE_ (vit__encoder_mode): int8 needs room for quantized
 * rows, bf16 for rounded ones. */
size_t vit__scratch_floats(const vit__encoder *e, int B, int T, int threads);
void vit__scratch_carve(vit__scratch *s, float *mem, const vit__encoder *e,
                        int B, int T);

/* Binds e->L layers (e->D, e->F set) to tensors named by `nm`. */
vit_status vit__encoder_bind(vit__encoder *e, vit__weights *w,
                             const vit__layer_names *nm, const char *prefix,
                             int qkv_bias, vit_error *err);
/* Quantizes the bound layers' four products to int8 (sets e->int8), then
 * releases their float32 weights. */
vit_status vit__encoder_quantize(vit__encoder *e, vit__weights *w,
                                 vit_error *err);
/* Bytes of the int8 weights vit__encoder_quantize made. */
size_t vit__encoder_int8_bytes(const vit__encoder *e);
/* Rounds the bound layers' four products' weights to bfloat16: packed for
 * oneDNN (sets e->bf16) where vit__bf16_onednn, else widened back to
 * float32 (sets e->bf16_wide); then releases the originals. */
vit_status vit__encoder_bf16(vit__encoder *e, vit__weights *w,
                             vit_error *err);
/* Bytes of the weights vit__encoder_bf16 made. */
size_t vit__encoder_bf16_bytes(const vit__encoder *e);
void vit__encoder_free(vit__encoder *e);
/* x (B, T, D) through the layers in place; causal: each token attends to
 * those before it; nkeys (B) or NULL: sequence b attends to its first
 * nkeys[b] tokens only (the rest are padding). */
void vit__encoder_forward(const vit__encoder *e, float *x, int B, int T,
                          int causal, const int *nkeys, const vit__scratch *s);

/* ---- config files (config.c) ---- */

/* Caps on config values: far past any real model, low enough that products
 * of them cannot overflow an int or ask for absurd memory. */
#define CFG_MAX_DIM 65536
#define CFG_MAX_LAYERS 1024
#define CFG_MAX_VOCAB (1 << 22)

/* Typed getters for a field of a config object: a missing or null field
 * gives the default; a present one of the wrong type or range is an error
 * naming `path` and the field. */
vit_status vit__cfg_int(json_t *o, const char *path, const char *key, int def,
                        int lo, int hi, int *out, vit_error *err);
vit_status vit__cfg_bool(json_t *o, const char *path, const char *key,
                         int def, int *out, vit_error *err);
vit_status vit__cfg_float(json_t *o, const char *path, const char *key,
                          double def, double *out, vit_error *err);
vit_status vit__cfg_act(json_t *o, const char *path, const char *key,
                        const char *def, vit__act *out, vit_error *err);
/* An integer or a [height, width] pair. */
vit_status vit__cfg_size2(json_t *o, const char *path, const char *key,
                          int def, int *h, int *w, vit_error *err);

/* The image processor a model directory describes. */
typedef struct {
    img_preprocess_cfg cfg;
    int convert_rgb; /* do_convert_rgb */
    int missing;     /* there is no preprocessor_config.json */
} vit__processor;

/* The processor classes whose defaults differ: ViT's; CLIP's, which BiT's
 * (DINOv2's) share; DeiT's. NONE: the model type has no processor class
 * of its own in transformers, so the file must name one. */
typedef enum {
    VIT_PROC_VIT,
    VIT_PROC_CLIP,
    VIT_PROC_DEIT,
    VIT_PROC_SIGLIP,
    VIT_PROC_NONE
} vit__proc_kind;

/* DIR/preprocessor_config.json read as transformers 5 reads it: the class
 * it names (or the model's own, model_kind), that class's defaults under
 * what the file sets. Checks that it makes model_h x model_w tensors
 * where that is known upfront (model_h 0: a model that takes any size).
 * A missing file is not an error here (pr->missing): a model can still
 * take preprocessed pixels. */
vit_status vit__read_preprocessor(const char *dir, vit__proc_kind model_kind,
                                  int model_h, int model_w,
                                  vit__processor *pr, vit_error *err);
/* 1 and the size of every tensor the processor makes, when that is known
 * before seeing an image (a crop, or a resize to a fixed size); else 0. */
int vit__processor_size(const vit__processor *pr, int *h, int *w);

/* ---- open_clip's directories (openclip.c) ---- */

/* Whether DIR is open_clip's: open_clip_config.json and no config.json. */
int vit__openclip_dir(const char *dir);
/* DIR/open_clip_config.json as the CLIPModel config.json it describes
 * (a new reference); the variants vit does not run are refused. */
vit_status vit__openclip_config(const char *dir, json_t **out,
                                vit_error *err);
/* How open_clip tokenizes DIR's texts: its SimpleTokenizer, or, where
 * text_cfg names hf_tokenizer_name, its HFTokenizer over the directory's
 * tokenizer files; NONE when DIR is not open_clip's. */
txt_openclip vit__openclip_tokenizer(const char *dir);
/* Its preprocess_cfg as open_clip's image_transform runs it, for an
 * image tower of h x w (torchvision: the option asked for that backend,
 * which open_clip has not). */
vit_status vit__openclip_processor(const char *dir, int h, int w,
                                   int torchvision, vit__processor *pr,
                                   vit_error *err);
/* DIR/open_clip_model.safetensors with its tensors also named as
 * CLIPModel's (views, and the projections transposed). */
vit_status vit__openclip_weights(const char *dir, vit__weights **out,
                                 vit_error *err);

/* ---- the vision tower (vision.c) ---- */

typedef struct {
    int C, Hi, Wi, P;      /* channels, image size, patch size */
    int gh, gw, NP, T, D;  /* patch grid, patches, tokens, hidden size */
    int nprefix;           /* tokens before the patches: the class token,
                              DeiT's distillation token, DINOv2's
                              registers */
    int floor_patches;     /* a size that is no multiple of P drops the
                              last partial patches (DINOv2's convolution)
                              rather than being refused */
    int qkv_bias;
    vit__encoder enc;
    const float *patch_w;  /* (D, C * P * P) */
    const float *patch_b;  /* (D), NULL for CLIP */
    const float *prefix;   /* (nprefix, D) */
    const float *pos;      /* (T, D), token by token (zeros where a token
                              has none) */
    const float *pre_w, *pre_b;    /* (D) CLIP's pre_layrnorm, else NULL */
    const float *post_w, *post_b;  /* (D) final layernorm, or NULL */
    int post_all;  /* layernorm every token (ViT) or the class token (CLIP) */
} vit__vision;

/* Derives the patch grid and token count from C, Hi, Wi, P, nprefix and
 * enc.D. */
vit_status vit__vision_geometry(vit__vision *v, const char *path,
                                vit_error *err);
/* src (sh * sw, D), position embeddings on a grid of sh x sw, resized to
 * dh x dw into dst (dh * dw, D) as torch.nn.functional.interpolate(mode=
 * "bicubic", align_corners=False) resizes them: antialias 0 is its plain
 * bicubic (a = -0.75, clamped borders), 1 its antialiased one (a = -0.5,
 * widened when shrinking) — DINOv2 and DINOv2 with registers each use
 * one. */
vit_status vit__pos_resize(float *dst, const float *src, int sh, int sw,
                           int dh, int dw, int D, int antialias,
                           vit_error *err);

/* A distilled DeiT's two heads (L, D) each, whose mean transformers and
 * timm return: one (L, 2D) product over the class and distillation tokens
 * side by side, half of each, into memory w owns. */
vit_status vit__pair_heads(vit__weights *w, const float *cw, const float *cb,
                           const float *dw, const float *db, int L, int D,
                           const float **head_w, const float **head_b,
                           vit_error *err);
/* Floats of scratch for B images on `threads` threads: the im2col rows
 * and each thread's packing scratch for the patch product. */
size_t vit__vision_floats(const vit__vision *v, int B, int threads);
/* pixels (B, C, Hi, Wi) -> x (B, T, D), final-layernormed as post_all says;
 * patches: vit__vision_floats(v, B, threads of s->pool) of scratch. */
void vit__vision_forward(const vit__vision *v, const float *pixels, int B,
                         float *x, float *patches, const vit__scratch *s);

/* ---- CLIP's and SigLIP's text tower (textmodel.c) ---- */

typedef struct {
    int V, Tmax, D;        /* vocabulary, max tokens, hidden size */
    int siglip;            /* no causal mask, padding masked, pooled at the
                              last token */
    int bos_id, eos_id, pad_id;  /* eos_id == 2: pool at the argmax id */
    int qkv_bias;
    vit__encoder enc;
    const float *tok;      /* (V, D) */
    const float *pos;      /* (Tmax, D) */
    const float *ln_w, *ln_b;  /* (D) final_layer_norm */
} vit__text;

/* Where transformers pools a sequence of T ids. */
int vit__text_pool_index(const vit__text *t, const int32_t *ids, int T);
/* ids (B, T) -> pooled (B, D); x: (B, T, D) of scratch. lens (B): each
 * sequence's tokens before its padding (SigLIP attends to those only),
 * or NULL. */
void vit__text_forward(const vit__text *t, const int32_t *ids,
                       const int *lens, int B, int T, float *x,
                       float *pooled, const vit__scratch *s);

/* ---- attention pooling and timm's VisionTransformer (timm.c) ---- */

/* SigLIP's vision head, and timm's attn_pool (AttentionPoolLatent): a
 * learned probe attending over the tokens (nn.MultiheadAttention), then a
 * layernorm and an MLP with a residual. */
typedef struct {
    const float *probe;        /* (D) */
    const float *in_w, *in_b;  /* (3D, D), (3D): query, key, value */
    const float *out_w, *out_b;
    const float *ln_w, *ln_b;
    const float *w1, *b1, *w2, *b2; /* (F, D), (F), (D, F), (D) */
    int skip;                  /* tokens it does not attend to, from the
                                  first: timm's prefix tokens */
} vit__map_head;

/* timm's global_pool. */
enum { VIT_TIMM_TOKEN, VIT_TIMM_AVG, VIT_TIMM_MAX, VIT_TIMM_AVGMAX,
       VIT_TIMM_MAP, VIT_TIMM_DISTILLED /* DeiT's: the mean of the class
                                           and distillation tokens */ };

/* What a timm VisionTransformer has past the vision tower. */
typedef struct {
    int pool;                  /* a VIT_TIMM_ */
    int pool_prefix;           /* avg / max over the prefix tokens too */
    const float *fc_w, *fc_b;  /* (D) fc_norm, or NULL */
    int num_classes;           /* 0: no head (an embedder) */
    char **labels;             /* num_classes: label_names or LABEL_i */
    const float *head_w, *head_b; /* (num_classes, D), (num_classes); or
                                     distilled, (num_classes, 2D): half of
                                     each head, over the two tokens */
    int head_pair;             /* distilled: the head reads both tokens */
} vit__timm;

/* Whether a parsed config.json is timm's (`architecture`, no
 * `model_type`). */
int vit__timm_config(json_t *cfg);
/* Reads DIR/config.json as timm does (its architecture's settings,
 * model_args, pretrained_cfg's eval transform, label_names) and binds the
 * checkpoint's tensors in timm's names: the vision tower v, the map head
 * (map->probe NULL without one), the pooling and head t, the processor;
 * *arch: the architecture's name (the caller frees it). */
vit_status vit__timm_bind(const char *dir, vit__weights *w, char **arch,
                          vit__vision *v, vit__map_head *map, vit__timm *t,
                          vit__processor *proc, vit_error *err);
/* vit__weights_open, refusing a directory with only pytorch_model.bin
 * with timm's way to convert it. */
vit_status vit__timm_weights_open(const char *dir, vit__weights **w,
                                  vit_error *err);
/* The B images' pooled features (B, D) from the tower's output x (B, T,
 * D): the pooling (all but the map head's, which is done already: out
 * then holds its output), then fc_norm. */
void vit__timm_pool(const vit__timm *t, const vit__vision *v, const float *x,
                    int B, float *out);

/* ---- models (model.c) ---- */

const vit_options *vit__model_options(const vit_model *m);
const vit__processor *vit__model_processor(const vit_model *m);
const vit_model *vit__state_model(const vit_state *s);

/* Runs the vision tower on B <= max_batch images; its output, (B, T, D),
 * is then at vit__state_hidden(s). */
void vit__forward_hidden(vit_state *s, const float *pixels, int B);
const float *vit__state_hidden(const vit_state *s);

/* Text embeddings (n x E) of n rows of T token ids, padded after the
 * end-of-text token; lens (n): each row's tokens before the padding (the
 * tokenizer's attention mask; SigLIP masks the rest), or NULL: none is
 * padding. */
vit_status vit__embed_ids(vit_state *s, const int32_t *ids, const int *lens,
                          int n, int T, float *out, vit_error *err);

#endif
