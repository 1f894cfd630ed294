/*
 * The bfloat16 linear layer (VIT_PRECISION_BF16) through oneDNN's matrix
 * product, and on CPUs with AMX-INT8 the int8 layer's integer sums
 * (VIT_PRECISION_INT8; qgemm.c scales them back): the only file that
 * includes oneDNN's header.
 *
 * Weights are rounded to bfloat16 once, at load, and reordered into the
 * layout oneDNN's product asks for (its format_tag_any), so a forward pass
 * only rounds its activation rows. The sums and outputs are float32, and
 * the bias (float32) is added by oneDNN, as is the residual stream for the
 * products that add into it (a sum post-op).
 *
 * Threads: Debian's libdnnl runs on OpenMP (libgomp). Rather than let it
 * start a team of its own beside the state's pool, which would either
 * oversubscribe the cores or need the two to hand them back and forth at
 * every product, each pool thread runs oneDNN on its own block of rows
 * with OpenMP's thread count set to 1 for the call: oneDNN then runs the
 * product inline on the calling thread and never starts a thread, so the
 * pool and oneDNN never run at the same time and vit's `threads` counts
 * both. The calling thread's own OpenMP setting is put back after each
 * call, since the caller of the library may use OpenMP itself.
 *
 * Shapes: oneDNN 2.6 accepts a run-time M (DNNL_RUNTIME_DIM_VAL), but only
 * in its slower reference-like GEMM ("gemm:jit"); a fixed M gets the
 * brgemm kernels. So each pool thread makes one product per (M, K, N,
 * bias, accumulate) it meets, lazily, all given the weights' layout chosen
 * at load, and keeps them (a forward pass meets two or three M per
 * thread).
 *
 * Nothing here prints, exits or aborts: every oneDNN status is checked and
 * becomes a vit error (at load), or a failure kept for vit__bctx_status
 * (in a forward pass, whose functions return nothing).
 */
#include "vit/vit_impl.h"

#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <string.h>

#include "cpu/cpu.h"

/* OpenMP's per-thread thread count, from libgomp (which libdnnl links).
 * Declared here rather than by <omp.h>: clang does not see GCC's. */
extern int omp_get_max_threads(void);
extern void omp_set_num_threads(int n);

/* ---- rounding ---- */

/* Each compiled for every path of the CPU table (vectorized there). */
static VIT_BODY void round_body(vit__bf16 *out, const float *in, size_t n)
{
#pragma omp simd
    for (size_t i = 0; i < n; i++)
        out[i] = vit__bf16_round1(in[i]);
}

static VIT_BODY void round_f32_body(float *x, size_t n)
{
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)vit__bf16_round1(x[i]) << 16;
        memcpy(&x[i], &u, sizeof u);
    }
}

VIT_PATHS(round, (vit__bf16 * out, const float *in, size_t n), (out, in, n))
VIT_PATHS(round_f32, (float *x, size_t n), (x, n))

void vit__bf16_round(vit__bf16 *out, const float *in, size_t n)
{
    VIT_PICK(round, (out, in, n));
}

void vit__bf16_round_f32(float *x, size_t n)
{
    VIT_PICK(round_f32, (x, n));
}

/* ---- the engine ---- */

static pthread_once_t engine_once = PTHREAD_ONCE_INIT;
static dnnl_engine_t engine;
static dnnl_status_t engine_status;
static int force_widen;

/* oneDNN dispatches on the CPU by itself; VIT_ISA caps it too, so that
 * VIT_ISA=avx512 on an AMX machine runs AVX512-BF16 kernels. Capping can
 * fail only when the process already ran oneDNN code of its own, whose
 * choice then stands: not an error for vit. */
static void engine_init(void)
{
    cpu_isa isa = cpu_get()->isa;
    if (isa < CPU_ISA_AMX)
        (void)dnnl_set_max_cpu_isa(isa == CPU_ISA_AVX512
                                       ? dnnl_cpu_isa_avx512_core_bf16
                                   : isa == CPU_ISA_AVX2 ? dnnl_cpu_isa_avx2
                                                         : dnnl_cpu_isa_sse41);
    engine_status = dnnl_engine_create(&engine, dnnl_cpu, 0);
}

static vit_status engine_get(vit_error *err)
{
    pthread_once(&engine_once, engine_init);
    if (engine_status != dnnl_success)
        return vit__fail(err, VIT_E_NOMEM,
                         "oneDNN: cannot make a CPU engine (status %d)",
                         (int)engine_status);
    return VIT_OK;
}

int vit__bf16_onednn(void)
{
    return cpu_bf16() && !__atomic_load_n(&force_widen, __ATOMIC_RELAXED);
}

void vit__bf16_force_widen(int on)
{
    __atomic_store_n(&force_widen, on != 0, __ATOMIC_RELAXED);
}

/* int8 sums through oneDNN where the CPU has AMX-INT8 (its tiles multiply
 * uint8 by int8 into exact int32 sums, as vit's VNNI kernel does, at
 * several times the rate). Tests force it where the CPU has AVX-512 VNNI,
 * whose oneDNN kernel is exact too (AVX2's would saturate). */
static int force_int8 = -1;

int vit__int8_onednn(void)
{
    int f = __atomic_load_n(&force_int8, __ATOMIC_RELAXED);
    return f < 0 ? cpu_amx_int8() : f && cpu_avx512vnni();
}

void vit__int8_force_onednn(int on)
{
    __atomic_store_n(&force_int8, on < 0 ? -1 : on != 0, __ATOMIC_RELAXED);
}

/* ---- descriptors ---- */

static dnnl_status_t plain_md(dnnl_memory_desc_t *md, int64_t rows,
                              int64_t cols, dnnl_data_type_t dt,
                              dnnl_format_tag_t tag)
{
    dnnl_dims_t dims = {rows, cols};
    return dnnl_memory_desc_init_by_tag(md, 2, dims, dt, tag);
}

/* The source of a product: bf16 (M, K) rows K apart, or int8's uint8
 * (M, K) rows lda apart. */
static dnnl_status_t src_md(dnnl_memory_desc_t *md, int64_t M, int64_t K,
                            int int8, int64_t lda)
{
    if (!int8)
        return plain_md(md, M, K, dnnl_bf16, dnnl_ab);
    dnnl_dims_t dims = {M, K}, strides = {lda, 1};
    return dnnl_memory_desc_init_by_strides(md, 2, dims, dnnl_u8, strides);
}

/* A product of one shape, with memory objects for its four arguments,
 * whose buffers are set at each run. */
typedef struct {
    int M, K, N, bias, accumulate, int8;
    int wsrc;   /* weights: 0 packed (a vit__bmat); else another product's
                 * activations, bf16 (K, N) row-major (W_KN) or (N, K)
                 * (W_NK) */
    int elt;    /* an activation applied to the sums (a dnnl_alg_kind_t),
                 * or 0; then alpha its parameter */
    float alpha;
    int d16;    /* dst in bf16 rather than f32 */
    size_t lda; /* int8: the source's row stride */
    dnnl_primitive_t prim;
    dnnl_memory_t a, w, b, d;
} product;

enum { W_KN = 1, W_NK = 2 };

/* The destination of k's product: (M, N) f32, bf16, or int8's s32 sums. */
static dnnl_status_t dst_md(dnnl_memory_desc_t *md, const product *k)
{
    return plain_md(md, k->M, k->N,
                    k->int8  ? dnnl_s32
                    : k->d16 ? dnnl_bf16
                             : dnnl_f32,
                    dnnl_ab);
}

/* The primitive descriptor of k's product: (M, K) bf16 @ wmd (K, N) +
 * bias, activated, -> (M, N) stored or added to dst; or with int8, (M, K)
 * u8 rows lda apart @ wmd s8 -> (M, N) s32 sums. */
static dnnl_status_t product_pd(dnnl_primitive_desc_t *pd, const product *k,
                                const dnnl_memory_desc_t *wmd)
{
    dnnl_memory_desc_t a, b, d;
    dnnl_matmul_desc_t desc;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_status_t st;
    if ((st = src_md(&a, k->M, k->K, k->int8, (int64_t)k->lda)) ||
        (st = plain_md(&b, 1, k->N, dnnl_f32, dnnl_ab)) ||
        (st = dst_md(&d, k)) ||
        (st = dnnl_matmul_desc_init(&desc, &a, wmd, k->bias ? &b : NULL,
                                    &d)) ||
        (st = dnnl_primitive_attr_create(&attr)))
        return st;
    if ((k->accumulate || k->elt) &&
        ((st = dnnl_post_ops_create(&po)) ||
         (k->accumulate && (st = dnnl_post_ops_append_sum(po, 1.0f))) ||
         (k->elt && (st = dnnl_post_ops_append_eltwise(
                         po, 1.0f, (dnnl_alg_kind_t)k->elt, k->alpha, 0))) ||
         (st = dnnl_primitive_attr_set_post_ops(attr, po))))
        goto done;
    st = dnnl_primitive_desc_create(pd, &desc, attr, engine, NULL);
done:
    if (po)
        dnnl_post_ops_destroy(po);
    dnnl_primitive_attr_destroy(attr);
    return st;
}

/* ---- packed weights ---- */

struct vit__bmat {
    int N, K;
    int int8;              /* s8 weights for the int8 sums, else bf16 */
    dnnl_memory_desc_t md; /* the packed layout */
    void *data;            /* md's bytes */
    size_t bytes;
    const float *bias;
};

/* The M the weights' layout is chosen for: a ViT-B batch's block of rows
 * on a thread or two. The layout oneDNN's brgemm product asks for depends
 * on K and N (and the ISA), and every M accepts it. */
#define LAYOUT_M 256

/* Runs `prim` with `n` arguments on a stream of its own, inline on the
 * calling thread (see the top of the file). */
static dnnl_status_t run_inline(dnnl_primitive_t prim, dnnl_stream_t stream,
                                int n, const dnnl_exec_arg_t *args)
{
    int was = omp_get_max_threads();
    omp_set_num_threads(1);
    dnnl_status_t st = dnnl_primitive_execute(prim, stream, n, args);
    if (st == dnnl_success)
        st = dnnl_stream_wait(stream);
    omp_set_num_threads(was);
    return st;
}

/* b's weights: plain (N, K) row-major, bf16 or s8 as b->int8 says,
 * reordered into the layout oneDNN's product asks for. */
static vit_status pack(vit__bmat *b, const void *plain, vit_error *err)
{
    vit_status vs = VIT_OK;
    int N = b->N, K = b->K;
    dnnl_data_type_t dt = b->int8 ? dnnl_s8 : dnnl_bf16;
    dnnl_primitive_desc_t pd = NULL, rpd = NULL;
    dnnl_primitive_t reorder = NULL;
    dnnl_memory_t from = NULL, to = NULL;
    dnnl_stream_t stream = NULL;
    dnnl_memory_desc_t any, pmd;
    dnnl_status_t st = dnnl_success;
    /* The nn.Linear weight (N, K) row-major is oneDNN's (K, N) weights
     * in the transposed tag "ba". */
    if ((st = plain_md(&any, K, N, dt, dnnl_format_tag_any)) ||
        (st = plain_md(&pmd, K, N, dt, dnnl_ba)) ||
        (st = product_pd(&pd,
                         &(product){.M = LAYOUT_M, .K = K, .N = N,
                                    .bias = b->bias != NULL,
                                    .int8 = b->int8, .lda = (size_t)K},
                         &any)))
        goto done;
    const dnnl_memory_desc_t *q =
        dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    if (!q) {
        st = dnnl_runtime_error;
        goto done;
    }
    b->md = *q;
    b->bytes = dnnl_memory_desc_get_size(&b->md);
    b->data = aligned_alloc(64, (b->bytes + 63) & ~(size_t)63);
    if (!b->data) {
        vs = vit__fail(err, VIT_E_NOMEM, "out of memory");
        goto done;
    }
    /* Padding, if the layout has any, must read as zeros. */
    memset(b->data, 0, b->bytes);
    dnnl_exec_arg_t args[2];
    if ((st = dnnl_reorder_primitive_desc_create(&rpd, &pmd, engine, &b->md,
                                                 engine, NULL)) ||
        (st = dnnl_primitive_create(&reorder, rpd)) ||
        (st = dnnl_memory_create(&from, &pmd, engine,
                                 (void *)(uintptr_t)plain)) ||
        (st = dnnl_memory_create(&to, &b->md, engine, b->data)) ||
        (st = dnnl_stream_create(&stream, engine,
                                 dnnl_stream_default_flags)))
        goto done;
    args[0] = (dnnl_exec_arg_t){DNNL_ARG_FROM, from};
    args[1] = (dnnl_exec_arg_t){DNNL_ARG_TO, to};
    st = run_inline(reorder, stream, 2, args);
done:
    if (st != dnnl_success)
        vs = vit__fail(err, VIT_E_NOMEM,
                       "oneDNN: cannot pack a %d x %d %s weight (status %d)",
                       N, K, b->int8 ? "int8" : "bfloat16", (int)st);
    if (stream)
        dnnl_stream_destroy(stream);
    if (from)
        dnnl_memory_destroy(from);
    if (to)
        dnnl_memory_destroy(to);
    if (reorder)
        dnnl_primitive_destroy(reorder);
    if (rpd)
        dnnl_primitive_desc_destroy(rpd);
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    return vs;
}

static vit_status pack_new(vit__bmat **out, const void *plain, int N, int K,
                           int int8, const float *bias, vit_error *err)
{
    vit_status vs;
    *out = NULL;
    if ((vs = engine_get(err)) != VIT_OK)
        return vs;
    vit__bmat *b = calloc(1, sizeof *b);
    if (!b)
        return vit__fail(err, VIT_E_NOMEM, "out of memory");
    b->N = N;
    b->K = K;
    b->int8 = int8;
    b->bias = bias;
    if ((vs = pack(b, plain, err)) != VIT_OK) {
        vit__bmat_free(b);
        return vs;
    }
    *out = b;
    return VIT_OK;
}

vit_status vit__bmat_pack(vit__bmat **out, const float *w, const float *bias,
                          int N, int K, vit_error *err)
{
    *out = NULL;
    vit__bf16 *plain = malloc((size_t)N * K * sizeof *plain);
    if (!plain)
        return vit__fail(err, VIT_E_NOMEM, "out of memory");
    /* Rounded here rather than by oneDNN's reorder, so that the rounding
     * is the one defined above on every CPU; a BF16 checkpoint's weights,
     * widened exactly at load, come back as stored. */
    vit__bf16_round(plain, w, (size_t)N * K);
    vit_status vs = pack_new(out, plain, N, K, 0, bias, err);
    free(plain);
    return vs;
}

vit_status vit__bmat_pack_int8(vit__bmat **out, const int8_t *w, int N,
                               int K, vit_error *err)
{
    return pack_new(out, w, N, K, 1, NULL, err);
}

void vit__bmat_free(vit__bmat *b)
{
    if (!b)
        return;
    free(b->data);
    free(b);
}

size_t vit__bmat_bytes(const vit__bmat *b) { return b ? b->bytes : 0; }

/* ---- a pool's products ---- */

/* Shapes a thread keeps; past that (a text tower fed every length, say)
 * it starts over. */
#define MAX_PRODUCTS 48

typedef struct {
    dnnl_stream_t stream;
    product p[MAX_PRODUCTS];
    int n;
    char pad[64];
} thread_state;

struct vit__bctx {
    int n;
    thread_state *t;
    /* The first failure of a forward pass, by any thread. */
    pthread_mutex_t mu;
    vit_status status;
    char msg[sizeof ((vit_error *)0)->msg];
};

static void product_free(product *p)
{
    dnnl_memory_t *m[] = {&p->a, &p->w, &p->b, &p->d};
    for (int i = 0; i < 4; i++)
        if (*m[i])
            dnnl_memory_destroy(*m[i]);
    if (p->prim)
        dnnl_primitive_destroy(p->prim);
    memset(p, 0, sizeof *p);
}

vit_status vit__bctx_new(vit__bctx **out, int n, vit_error *err)
{
    vit_status vs;
    *out = NULL;
    if ((vs = engine_get(err)) != VIT_OK)
        return vs;
    vit__bctx *c = calloc(1, sizeof *c);
    if (!c || !(c->t = calloc((size_t)n, sizeof *c->t))) {
        free(c);
        return vit__fail(err, VIT_E_NOMEM, "out of memory");
    }
    c->n = n;
    pthread_mutex_init(&c->mu, NULL);
    for (int i = 0; i < n; i++) {
        dnnl_status_t st = dnnl_stream_create(&c->t[i].stream, engine,
                                              dnnl_stream_default_flags);
        if (st != dnnl_success) {
            vit__bctx_free(c);
            return vit__fail(err, VIT_E_NOMEM,
                             "oneDNN: cannot make a stream (status %d)",
                             (int)st);
        }
    }
    *out = c;
    return VIT_OK;
}

void vit__bctx_free(vit__bctx *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->n; i++) {
        for (int k = 0; k < c->t[i].n; k++)
            product_free(&c->t[i].p[k]);
        if (c->t[i].stream)
            dnnl_stream_destroy(c->t[i].stream);
    }
    pthread_mutex_destroy(&c->mu);
    free(c->t);
    free(c);
}

static void fail(vit__bctx *c, const char *what, dnnl_status_t st,
                 const product *k)
{
    pthread_mutex_lock(&c->mu);
    if (c->status == VIT_OK) {
        c->status = st == dnnl_out_of_memory ? VIT_E_NOMEM : VIT_E_ARG;
        snprintf(c->msg, sizeof c->msg,
                 "oneDNN: cannot %s a%s product of %d x %d by %d "
                 "(status %d)",
                 what, k->int8 ? "n int8" : " bfloat16", k->M, k->K, k->N,
                 (int)st);
    }
    pthread_mutex_unlock(&c->mu);
}

vit_status vit__bctx_status(vit__bctx *c, vit_error *err)
{
    if (!c)
        return VIT_OK;
    pthread_mutex_lock(&c->mu);
    vit_status st = c->status;
    if (st != VIT_OK)
        vit__fail(err, st, "%s", c->msg);
    c->status = VIT_OK;
    pthread_mutex_unlock(&c->mu);
    return st;
}

/* Thread t's product of the shape `key` describes, made on first use;
 * `wmd` the weights' layout when they are packed. */
static product *find(vit__bctx *c, thread_state *t, const product *key,
                     const dnnl_memory_desc_t *wmd)
{
    for (int i = 0; i < t->n; i++) {
        product *p = &t->p[i];
        if (p->M == key->M && p->K == key->K && p->N == key->N &&
            p->bias == key->bias && p->accumulate == key->accumulate &&
            p->int8 == key->int8 && p->wsrc == key->wsrc &&
            p->elt == key->elt && p->alpha == key->alpha &&
            p->d16 == key->d16 && p->lda == key->lda)
            return p;
    }
    if (t->n == MAX_PRODUCTS) {
        for (int i = 0; i < t->n; i++)
            product_free(&t->p[i]);
        t->n = 0;
    }
    product *p = &t->p[t->n];
    dnnl_primitive_desc_t pd = NULL;
    dnnl_memory_desc_t amd, bmd, dmd, wact;
    dnnl_status_t st = dnnl_success;
    if (key->wsrc) {
        st = plain_md(&wact, key->K, key->N, dnnl_bf16,
                      key->wsrc == W_NK ? dnnl_ba : dnnl_ab);
        wmd = &wact;
    }
    if (st || (st = product_pd(&pd, key, wmd)) ||
        (st = dnnl_primitive_create(&p->prim, pd)) ||
        (st = src_md(&amd, key->M, key->K, key->int8, (int64_t)key->lda)) ||
        (st = plain_md(&bmd, 1, key->N, dnnl_f32, dnnl_ab)) ||
        (st = dst_md(&dmd, key)) ||
        (st = dnnl_memory_create(&p->a, &amd, engine, DNNL_MEMORY_NONE)) ||
        (st = dnnl_memory_create(&p->w, wmd, engine, DNNL_MEMORY_NONE)) ||
        (st = dnnl_memory_create(&p->b, &bmd, engine, DNNL_MEMORY_NONE)) ||
        (st = dnnl_memory_create(&p->d, &dmd, engine, DNNL_MEMORY_NONE))) {
        if (pd)
            dnnl_primitive_desc_destroy(pd);
        product_free(p);
        fail(c, "make", st, key);
        return NULL;
    }
    dnnl_primitive_desc_destroy(pd);
    dnnl_primitive_t prim = p->prim;
    dnnl_memory_t m[4] = {p->a, p->w, p->b, p->d};
    *p = *key;
    p->prim = prim;
    p->a = m[0], p->w = m[1], p->b = m[2], p->d = m[3];
    t->n++;
    return p;
}

/* Runs key's product on pool thread w: dst = or += a @ the weights (+
 * bias). */
static void run(vit__bctx *c, int w, const product *key,
                const dnnl_memory_desc_t *wmd, const void *a,
                const void *weights, const float *bias, void *dst)
{
    if (key->M < 1)
        return;
    thread_state *t = &c->t[w];
    product *p = find(c, t, key, wmd);
    if (!p)
        return;
    /* oneDNN's memory objects take non-const buffers; it only reads the
     * source, weights and bias. */
    dnnl_status_t st;
    if ((st = dnnl_memory_set_data_handle(p->a, (void *)(uintptr_t)a)) ||
        (st = dnnl_memory_set_data_handle(p->w,
                                          (void *)(uintptr_t)weights)) ||
        (st = dnnl_memory_set_data_handle(p->d, dst)) ||
        (p->bias && (st = dnnl_memory_set_data_handle(
                         p->b, (void *)(uintptr_t)bias)))) {
        fail(c, "run", st, key);
        return;
    }
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, p->a},
                               {DNNL_ARG_WEIGHTS, p->w},
                               {DNNL_ARG_DST, p->d},
                               {DNNL_ARG_BIAS, p->b}};
    if ((st = run_inline(p->prim, t->stream, p->bias ? 4 : 3, args)))
        fail(c, "run", st, key);
}

void vit__bmat_run(vit__bctx *c, int w, const vit__bmat *b,
                   const vit__bf16 *a, int M, float *dst, int accumulate)
{
    product key = {.M = M, .K = b->K, .N = b->N, .bias = b->bias != NULL,
                   .accumulate = accumulate};
    run(c, w, &key, &b->md, a, b->data, b->bias, dst);
}

/* vit's activation as oneDNN's eltwise post-op: its kind and alpha. */
static int eltwise(vit__act act, float *alpha)
{
    *alpha = 0;
    switch (act) {
    case VIT_ACT_GELU:
        return dnnl_eltwise_gelu_erf;
    case VIT_ACT_GELU_TANH:
        return dnnl_eltwise_gelu_tanh;
    case VIT_ACT_QUICK_GELU: /* x * sigmoid(alpha x) */
        *alpha = 1.702f;
        return dnnl_eltwise_swish;
    case VIT_ACT_SILU:
        *alpha = 1.0f;
        return dnnl_eltwise_swish;
    case VIT_ACT_RELU:
        return dnnl_eltwise_relu;
    case VIT_ACT_TANH:
        return dnnl_eltwise_tanh;
    }
    return 0;
}

void vit__bmat_run_act(vit__bctx *c, int w, const vit__bmat *b,
                       const vit__bf16 *a, int M, vit__bf16 *dst,
                       vit__act act)
{
    product key = {.M = M, .K = b->K, .N = b->N, .bias = b->bias != NULL,
                   .d16 = 1};
    key.elt = eltwise(act, &key.alpha);
    run(c, w, &key, &b->md, a, b->data, b->bias, dst);
}

void vit__bmat_run_int8(vit__bctx *c, int w, const vit__bmat *b,
                        const uint8_t *a, size_t lda, int M, int32_t *dst)
{
    product key = {.M = M, .K = b->K, .N = b->N, .int8 = 1, .lda = lda};
    run(c, w, &key, &b->md, a, b->data, NULL, dst);
}

void vit__bact_run(vit__bctx *c, int w, const vit__bf16 *a,
                   const vit__bf16 *b, int M, int K, int N, int b_nk,
                   float *dst)
{
    product key = {.M = M, .K = K, .N = N, .wsrc = b_nk ? W_NK : W_KN};
    run(c, w, &key, NULL, a, b, NULL, dst);
}
