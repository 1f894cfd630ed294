/*
 * The per-thread state and its arena, and the forward passes behind
 * classify, embed, match and zero-shot.
 *
 * Dimension legend: B batch, T tokens, D hidden size, L labels,
 * E embedding (projection or pooler) size.
 */
#include "vit/model_impl.h"

#include <cblas.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

/* ---- state ---- */

vit_status vit_state_new(const vit_model *m, vit_state **out, vit_error *err)
{
    if (!m || !out)
        return vit__fail(err, VIT_E_ARG, "vit_state_new: NULL argument");
    vit_state *s = calloc(1, sizeof *s);
    if (!s)
        return vit__fail(err, VIT_E_NOMEM, "out of memory");
    /* One arena serves both towers: each buffer is as large as the larger
     * tower needs, since a state runs one forward at a time. */
    int B = m->opt.max_batch;
    int threads = m->opt.threads > 0 ? m->opt.threads
                                     : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (threads < 1)
        threads = 1;
    if (threads > 256)
        threads = 256;
    size_t nx = 0, np = 0, nscr = 0, D = 0;
    if (m->has_vision) {
        const vit__vision *v = &m->vis;
        nx = (size_t)B * v->T * v->D;
        np = vit__vision_floats(v, B, threads);
        nscr = vit__scratch_floats(&v->enc, B, v->T, threads);
        D = (size_t)v->D;
    }
    if (m->has_text) {
        const vit__text *t = &m->txt;
        size_t tx = (size_t)B * t->Tmax * t->D;
        size_t ts = vit__scratch_floats(&t->enc, B, t->Tmax, threads);
        nx = tx > nx ? tx : nx;
        nscr = ts > nscr ? ts : nscr;
        D = (size_t)t->D > D ? (size_t)t->D : D;
    }
    int E = vit__model_embed_dim(m);
    size_t heads = (size_t)(m->num_labels > E ? m->num_labels : E);
    size_t nc = (size_t)B * D * (m->head_pair ? 2 : 1), nh = (size_t)B * heads;
    size_t nids = m->has_text ? (size_t)B * m->txt.Tmax : 0;
    /* The im2col buffer is done with before the encoder first writes its
     * scratch, so one region serves both. */
    size_t total = nx + nc + nh + nids + (np > nscr ? np : nscr);
    s->arena = malloc(total * sizeof(float));
    if (!s->arena) {
        free(s);
        return vit__fail(err, VIT_E_NOMEM,
                         "out of memory for a %zu MiB activation arena "
                         "(max_batch %d)",
                         total * sizeof(float) >> 20, B);
    }
    s->prof = calloc((size_t)threads, sizeof *s->prof);
    if (!s->prof || !(s->pool = vit__pool_new(threads))) {
        free(s->prof);
        free(s->arena);
        free(s);
        return vit__fail(err, VIT_E_NOMEM, "cannot start %d threads",
                         threads);
    }
    /* Each pool thread runs its own oneDNN products (bgemm.c). */
    if (m->vis.enc.bf16 || m->txt.enc.bf16 || m->vis.enc.int8_onednn ||
        m->txt.enc.int8_onednn) {
        vit_status st = vit__bctx_new(&s->bctx, threads, err);
        if (st != VIT_OK) {
            vit__pool_free(s->pool);
            free(s->prof);
            free(s->arena);
            free(s);
            return st;
        }
    }
    /* The pool splits every GEMM among its threads; OpenBLAS threading
     * them again would oversubscribe the cores. */
    openblas_set_num_threads(1);
    s->m = m;
    s->max_batch = B;
    s->x = s->arena;
    s->cls = s->x + nx;
    s->head = s->cls + nc;
    s->ids = (int32_t *)(s->head + nh);
    s->scratch = s->head + nh + nids;
    s->patches = s->scratch;
    if (m->has_vision)
        vit__scratch_carve(&s->s, s->scratch, &m->vis.enc, B, m->vis.T);
    s->s.pool = s->pool;
    s->s.bctx = s->bctx;
    /* The text tower carves the same scratch at its own sizes per call. */
    *out = s;
    return VIT_OK;
}

void vit_state_free(vit_state *s)
{
    if (!s)
        return;
    vit__pool_free(s->pool);
    vit__bctx_free(s->bctx);
    free(s->prof);
    free(s->arena);
    free(s);
}

const vit_model *vit__state_model(const vit_state *s) { return s->m; }

void vit_state_profile_enable(vit_state *s, int on)
{
    if (!s)
        return;
    memset(s->prof, 0, (size_t)vit__pool_size(s->pool) * sizeof *s->prof);
    s->s.prof = on ? s->prof : NULL;
}

int vit_state_profile_get(const vit_state *s, vit_profile_entry *out)
{
    static const char *names[VIT_PROF_N] = {
        "patch embedding", "layernorm", "matmul",
        "attention",       "softmax",   "activation",
        "quantize",
    };
    int n = vit__pool_size(s->pool);
    for (int k = 0; k < VIT_PROF_N; k++) {
        out[k] = (vit_profile_entry){.op = names[k]};
        for (int w = 0; w < n; w++) {
            out[k].thread_seconds += s->prof[w].sec[k];
            out[k].gflop += s->prof[w].flop[k] * 1e-9;
            out[k].calls += s->prof[w].calls[k];
        }
    }
    return n;
}
const float *vit__state_hidden(const vit_state *s) { return s->x; }

/* ---- forward ---- */

void vit__forward_hidden(vit_state *s, const float *pixels, int B)
{
    vit__vision_forward(&s->m->vis, pixels, B, s->x, s->patches, &s->s);
}

static void gather_cls(vit_state *s, int B)
{
    int D = s->m->vis.D, T = s->m->vis.T;
    for (int b = 0; b < B; b++)
        memcpy(s->cls + (size_t)b * D, s->x + (size_t)b * T * D,
               (size_t)D * sizeof(float));
}

/* The k best of L logits, scored by their softmax, or each by its sigmoid
 * (SigLIP's zero-shot labels, which are not exclusive). */
static void top_k(const float *logits, int L, int k, vit_prediction *out,
                  char *const *labels, float *probs, int sigmoid)
{
    memcpy(probs, logits, (size_t)L * sizeof *probs);
    if (sigmoid)
        for (int i = 0; i < L; i++)
            probs[i] = 1.0f / (1.0f + expf(-probs[i]));
    else
        vit__softmax(probs, 1, L);
    int kk = k < L ? k : L;
    for (int r = 0; r < kk; r++) {
        int best = -1;
        for (int i = 0; i < L; i++) {
            if (probs[i] < 0)
                continue; /* taken */
            if (best < 0 || probs[i] > probs[best])
                best = i;
        }
        out[r].id = best;
        out[r].score = probs[best];
        out[r].label = labels[best];
        probs[best] = -1;
    }
    for (int r = kk; r < k; r++)
        out[r] = (vit_prediction){.id = -1, .score = 0, .label = NULL};
}

static vit_status need_vision(const vit_state *s, const void *pixels, int n,
                              vit_error *err)
{
    if (!s || (!pixels && n > 0) || n < 0)
        return vit__fail(err, VIT_E_ARG, "NULL state or pixels");
    if (!s->m->has_vision)
        return vit__fail(err, VIT_E_NO_HEAD,
                         "%s has no vision tower; it embeds text only",
                         s->m->architecture);
    return VIT_OK;
}

static void map_head(vit_state *s, int B, float *dst);

/* timm's pooled features into s->cls: its attention pooling, or the
 * others, then fc_norm. */
static void timm_pool(vit_state *s, int B)
{
    const vit_model *m = s->m;
    if (m->timm.pool == VIT_TIMM_MAP)
        map_head(s, B, s->cls);
    vit__timm_pool(&m->timm, &m->vis, s->x, B, s->cls);
}

/* Runs the vision tower over n images in chunks of max_batch, calling
 * `head` on each chunk's pooled tokens (s->cls, B x D_vision). */
typedef void (*vision_head)(vit_state *s, int i0, int B, void *ctx);

static void vision_chunks(vit_state *s, const float *pixels, int n,
                          vision_head head, void *ctx)
{
    const vit__vision *v = &s->m->vis;
    size_t per = (size_t)v->C * v->Hi * v->Wi;
    for (int i0 = 0; i0 < n; i0 += s->max_batch) {
        int B = n - i0 < s->max_batch ? n - i0 : s->max_batch;
        vit__forward_hidden(s, pixels + (size_t)i0 * per, B);
        if (s->m->family == FAM_TIMM)
            timm_pool(s, B);
        else
            gather_cls(s, B);
        head(s, i0, B, ctx);
    }
}

typedef struct {
    int top_k;
    vit_prediction *out;
    float *logits;
    float *probs;
    const vit_zeroshot *z;
} classify_ctx;

/* A two-token classifier's input, (B, 2D): the class token beside the
 * distillation token (DeiT) or beside the mean of the patch tokens, in
 * the order transformers sums them (DINOv2). */
static void gather_pair(vit_state *s, int B)
{
    const vit__vision *v = &s->m->vis;
    int D = v->D, T = v->T;
    for (int b = 0; b < B; b++) {
        const float *x = s->x + (size_t)b * T * D;
        float *dst = s->cls + (size_t)b * 2 * D;
        memcpy(dst, x, (size_t)D * sizeof *dst);
        if (s->m->head_pair == 1) {
            memcpy(dst + D, x + D, (size_t)D * sizeof *dst);
            continue;
        }
        for (int d = 0; d < D; d++) {
            float sum = 0;
            for (int t = v->nprefix; t < T; t++)
                sum += x[(size_t)t * D + d];
            dst[D + d] = sum / (float)v->NP;
        }
    }
}

static void classify_head(vit_state *s, int i0, int B, void *p)
{
    classify_ctx *c = p;
    const vit_model *m = s->m;
    int L = m->num_labels, K = m->vis.D;
    if (m->head_pair) {
        gather_pair(s, B);
        K *= 2;
    }
    vit__linear(s->head, s->cls, m->head_w, m->head_b, B, L, K);
    for (int b = 0; b < B; b++) {
        const float *lg = s->head + (size_t)b * L;
        if (c->logits)
            memcpy(c->logits + (size_t)(i0 + b) * L, lg,
                   (size_t)L * sizeof *lg);
        if (c->top_k > 0)
            top_k(lg, L, c->top_k, c->out + (size_t)(i0 + b) * c->top_k,
                  m->labels, c->probs, 0);
    }
}

vit_status vit_classify_pixels(vit_state *s, const float *pixels, int n,
                               int top_k_n, vit_prediction *out,
                               float *logits, vit_error *err)
{
    vit_status st = need_vision(s, pixels, n, err);
    if (st)
        return st;
    const vit_model *m = s->m;
    if (m->arch != VIT_ARCH_VIT_CLASSIFIER)
        return vit__fail(err, VIT_E_NO_HEAD,
                         "%s has no classification head; use embeddings%s",
                         m->architecture,
                         m->family == FAM_CLIP || m->family == FAM_SIGLIP
                             ? ", or zero-shot labels"
                             : "");
    if (top_k_n < 0 || (top_k_n > 0 && !out))
        return vit__fail(err, VIT_E_ARG, "bad top_k or NULL output");
    classify_ctx c = {top_k_n, out, logits, NULL, NULL};
    c.probs = malloc((size_t)m->num_labels * sizeof *c.probs);
    if (!c.probs)
        return vit__fail(err, VIT_E_NOMEM, "out of memory");
    vision_chunks(s, pixels, n, classify_head, &c);
    free(c.probs);
    return vit__bctx_status(s->bctx, err);
}

/* SigLIP's attention-pooling head over the B images' patch tokens (the
 * state's stream, final-layernormed) into dst (B, D): the probe's query
 * against every token's key and value, per head, then the output
 * projection, and the MLP on its layernorm added to it. The keys and
 * values take the encoder's scratch, free once the encoder is done. */
static void map_head(vit_state *s, int B, float *dst)
{
    const vit_model *m = s->m;
    const vit__map_head *h = &m->map;
    const vit__vision *v = &m->vis;
    int D = v->D, T = v->T, H = v->enc.H, dh = D / H, F = v->enc.F;
    float *K = s->s.k, *V = s->s.v, *q = s->s.q, *ctx = s->s.ctx;
    float *ff = s->s.ff, *p = s->s.scores;
    vit__pool_linear(s->pool, K, s->x, h->in_w + (size_t)D * D, h->in_b + D,
                     B * T, D, D);
    vit__pool_linear(s->pool, V, s->x, h->in_w + (size_t)2 * D * D,
                     h->in_b + 2 * D, B * T, D, D);
    vit__linear(q, h->probe, h->in_w, h->in_b, 1, D, D);
    float scale = 1.0f / sqrtf((float)dh);
    for (int b = 0; b < B; b++)
        for (int hd = 0; hd < H; hd++) {
            /* The tokens past h->skip: Tk of them. */
            int Tk = T - h->skip;
            size_t o = ((size_t)b * T + h->skip) * D + (size_t)hd * dh;
            const float *kb = K + o, *vb = V + o;
            for (int t = 0; t < Tk; t++) {
                float acc = 0;
                for (int d = 0; d < dh; d++)
                    acc += q[hd * dh + d] * scale * kb[(size_t)t * D + d];
                p[t] = acc;
            }
            vit__softmax(p, 1, Tk);
            float *c = ctx + (size_t)b * D + (size_t)hd * dh;
            for (int d = 0; d < dh; d++) {
                float acc = 0;
                for (int t = 0; t < Tk; t++)
                    acc += p[t] * vb[(size_t)t * D + d];
                c[d] = acc;
            }
        }
    vit__linear(dst, ctx, h->out_w, h->out_b, B, D, D);
    vit__layernorm(q, dst, h->ln_w, h->ln_b, B, D, v->enc.eps);
    vit__linear(ff, q, h->w1, h->b1, B, F, D);
    vit__activation(ff, (size_t)B * F, v->enc.act);
    vit__sgemm_op op = {.w = {h->w2}, .b = {h->b2}, .out = {dst},
                        .seg = D, .ld = D, .accumulate = 1};
    vit__sgemm(&op, ff, B, F, 0, D, NULL);
}

/* The B images' embeddings from the state's forward, into dst (B, E): a
 * projection of the class token (CLIP), the attention-pooling head
 * (SigLIP), a pooler, or the class token itself. */
static void image_embeds(vit_state *s, int B, float *dst)
{
    const vit_model *m = s->m;
    int D = m->vis.D, E = vit__model_embed_dim(m);
    if (m->family == FAM_SIGLIP) {
        map_head(s, B, dst);
    } else if (m->family == FAM_CLIP) {
        vit__linear(dst, s->cls, m->vproj, NULL, B, E, D);
    } else if (m->pool_dim) {
        vit__linear(dst, s->cls, m->pool_w, m->pool_b, B, E, D);
        vit__activation(dst, (size_t)B * E, m->pool_act);
    } else {
        memcpy(dst, s->cls, (size_t)B * D * sizeof *dst);
    }
}

static void embed_head(vit_state *s, int i0, int B, void *p)
{
    image_embeds(s, B, (float *)p + (size_t)i0 * vit__model_embed_dim(s->m));
}

vit_status vit_embed_pixels(vit_state *s, const float *pixels, int n,
                            float *out, vit_error *err)
{
    vit_status st = need_vision(s, pixels, n, err);
    if (st)
        return st;
    if (!out)
        return vit__fail(err, VIT_E_ARG, "NULL output");
    vision_chunks(s, pixels, n, embed_head, out);
    return vit__bctx_status(s->bctx, err);
}

/* ---- text ---- */

static vit_status need_text(const vit_state *s, vit_error *err)
{
    if (!s)
        return vit__fail(err, VIT_E_ARG, "NULL state");
    if (!s->m->has_text)
        return vit__fail(err, VIT_E_NO_HEAD,
                         "%s has no text tower; it embeds images only",
                         s->m->architecture);
    return VIT_OK;
}

vit_status vit__embed_ids(vit_state *s, const int32_t *ids, const int *lens,
                          int n, int T, float *out, vit_error *err)
{
    vit_status st = need_text(s, err);
    if (st)
        return st;
    const vit_model *m = s->m;
    const vit__text *t = &m->txt;
    if (T < 1 || T > t->Tmax)
        return vit__fail(err, VIT_E_ARG,
                         "%d tokens per text; the model takes 1 to %d", T,
                         t->Tmax);
    for (size_t i = 0; i < (size_t)n * T; i++)
        if (ids[i] < 0 || ids[i] >= t->V)
            return vit__fail(err, VIT_E_ARG,
                             "token id %d is outside the model's vocabulary "
                             "of %d",
                             ids[i], t->V);
    vit__scratch sc;
    int E = m->proj_dim;
    for (int i0 = 0; i0 < n; i0 += s->max_batch) {
        int B = n - i0 < s->max_batch ? n - i0 : s->max_batch;
        vit__scratch_carve(&sc, s->scratch, &t->enc, B, T);
        sc.pool = s->pool;
        sc.bctx = s->bctx;
        sc.prof = s->s.prof;
        vit__text_forward(t, ids + (size_t)i0 * T, lens ? lens + i0 : NULL, B,
                          T, s->x, s->cls, &sc);
        vit__linear(out + (size_t)i0 * E, s->cls, m->tproj, m->tproj_b, B, E,
                    t->D);
    }
    /* A failed oneDNN product leaves its outputs unwritten: the error,
     * not the embeddings, is the answer. */
    return vit__bctx_status(s->bctx, err);
}

vit_status vit_embed_texts(vit_state *s, const char *const *texts, int n,
                           float *out, vit_error *err)
{
    vit_status st = need_text(s, err);
    if (st)
        return st;
    if (n < 0 || (n > 0 && (!texts || !out)))
        return vit__fail(err, VIT_E_ARG, "NULL texts or output");
    const vit_model *m = s->m;
    if (!m->tok)
        return vit__fail(err, VIT_E_CONFIG,
                         "the model directory has no tokenizer (tokenizer.json, "
                         "vocab.json and merges.txt, or spiece.model)");
    int Tm = m->txt.Tmax, E = m->proj_dim;
    /* Tokenize a chunk, pad it to its longest text (the causal mask keeps
     * padding from reaching the pooled token), and run it. */
    enum { CHUNK = 64 };
    int cap = s->max_batch < CHUNK ? s->max_batch : CHUNK;
    for (int i0 = 0; i0 < n; i0 += cap) {
        int B = n - i0 < cap ? n - i0 : cap;
        int T = 1, len[CHUNK];
        int32_t *ids = s->ids;
        for (int b = 0; b < B; b++) {
            if (!texts[i0 + b])
                return vit__fail(err, VIT_E_ARG, "text %d is NULL", i0 + b);
            len[b] = txt_encode(m->tok, texts[i0 + b], strlen(texts[i0 + b]),
                                ids + (size_t)b * Tm, Tm);
            if (len[b] < 0)
                return vit__fail(err, VIT_E_NOMEM,
                                 "out of memory tokenizing text %d", i0 + b);
            T = len[b] > T ? len[b] : T;
        }
        /* SigLIP's texts are padded to the full length, as its processor
         * pads them (padding="max_length"): it pools at the last token. */
        if (m->txt.siglip)
            T = Tm;
        /* Compact the rows from stride Tm to stride T, padding each with
         * the tokenizer's pad token, as CLIPProcessor(padding=True) does:
         * the causal mask keeps padding from the pooled token, and with
         * the argmax convention a pad id equal to eos still pools at the
         * first eos. */
        int32_t pad = txt_pad_id(m->tok) >= 0 ? txt_pad_id(m->tok)
                                              : m->txt.pad_id;
        /* Gemma's tokenizer pads on the left unless its config says
         * otherwise, and transformers then runs the text at the end. */
        int left = txt_pads_left(m->tok);
        for (int b = 0; b < B; b++) {
            int32_t *src = ids + (size_t)b * Tm, *dst = ids + (size_t)b * T;
            int at = left ? T - len[b] : 0;
            memmove(dst + at, src, (size_t)len[b] * sizeof *dst);
            for (int j = 0; j < T - len[b]; j++)
                dst[left ? j : len[b] + j] = pad;
        }
        if ((st = vit__embed_ids(s, ids, m->tok_mask ? len : NULL, B, T,
                                 out + (size_t)i0 * E, err)))
            return st;
    }
    return VIT_OK;
}

/* ---- matching and zero-shot ---- */

void vit_l2_normalize(float *v, int n, int dim)
{
    for (int i = 0; i < n; i++) {
        float *r = v + (size_t)i * dim;
        double ss = 0;
        for (int d = 0; d < dim; d++)
            ss += (double)r[d] * r[d];
        float inv = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
        for (int d = 0; d < dim; d++)
            r[d] *= inv;
    }
}

vit_status vit_match(const vit_model *m, const float *image_embeds, int n,
                     const float *text_embeds, int k, float *logits,
                     float *probs, vit_error *err)
{
    if (!m || n < 0 || k < 1 || (n && (!image_embeds || !text_embeds)))
        return vit__fail(err, VIT_E_ARG, "vit_match: bad arguments");
    if (m->arch != VIT_ARCH_CLIP && m->arch != VIT_ARCH_SIGLIP)
        return vit__fail(err, VIT_E_NO_HEAD,
                         "%s has no logit_scale; matching needs a CLIPModel "
                         "or a SiglipModel",
                         m->architecture);
    int E = m->proj_dim;
    for (int i = 0; i < n; i++) {
        const float *a = image_embeds + (size_t)i * E;
        double na = 0;
        for (int d = 0; d < E; d++)
            na += (double)a[d] * a[d];
        for (int j = 0; j < k; j++) {
            const float *b = text_embeds + (size_t)j * E;
            double dot = 0, nb = 0;
            for (int d = 0; d < E; d++) {
                dot += (double)a[d] * b[d];
                nb += (double)b[d] * b[d];
            }
            double c = (na > 0 && nb > 0) ? dot / sqrt(na * nb) : 0;
            float lg = (float)(m->logit_scale * c) + m->logit_bias;
            if (logits)
                logits[(size_t)i * k + j] = lg;
            if (probs)
                probs[(size_t)i * k + j] =
                    m->arch == VIT_ARCH_SIGLIP ? 1.0f / (1.0f + expf(-lg)) : lg;
        }
        if (probs && m->arch != VIT_ARCH_SIGLIP)
            vit__softmax(probs + (size_t)i * k, 1, k);
    }
    return VIT_OK;
}

struct vit_zeroshot {
    const vit_model *m;
    int n;
    char **labels;
    float *embeds;  /* (n, E), L2-normalized */
};

void vit_zeroshot_free(vit_zeroshot *z)
{
    if (!z)
        return;
    for (int i = 0; i < z->n && z->labels; i++)
        free(z->labels[i]);
    free(z->labels);
    free(z->embeds);
    free(z);
}

/* Replaces each "{}" of tmpl with label. */
static char *fill_template(const char *tmpl, const char *label)
{
    size_t n = 1, ll = strlen(label);
    for (const char *p = tmpl; *p; p++)
        n += (p[0] == '{' && p[1] == '}') ? ll : 1;
    char *out = malloc(n), *o = out;
    if (!out)
        return NULL;
    for (const char *p = tmpl; *p; p++) {
        if (p[0] == '{' && p[1] == '}') {
            memcpy(o, label, ll);
            o += ll;
            p++;
        } else {
            *o++ = *p;
        }
    }
    *o = 0;
    return out;
}

vit_status vit_zeroshot_new(vit_state *s, const char *const *labels, int n,
                            const char *tmpl, vit_zeroshot **out,
                            vit_error *err)
{
    vit_status st = need_text(s, err);
    if (st)
        return st;
    if (!labels || n < 1 || !out)
        return vit__fail(err, VIT_E_ARG, "zero-shot needs at least one label");
    if (s->m->arch != VIT_ARCH_CLIP && s->m->arch != VIT_ARCH_SIGLIP)
        return vit__fail(err, VIT_E_NO_HEAD,
                         "zero-shot classification needs a CLIPModel or a "
                         "SiglipModel (both towers)");
    if (!tmpl)
        tmpl = "a photo of a {}.";
    int E = s->m->proj_dim;
    vit_zeroshot *z = calloc(1, sizeof *z);
    char **prompts = calloc((size_t)n, sizeof *prompts);
    if (!z || !prompts ||
        !(z->labels = calloc((size_t)n, sizeof *z->labels)) ||
        !(z->embeds = malloc((size_t)n * E * sizeof *z->embeds))) {
        st = vit__fail(err, VIT_E_NOMEM, "out of memory");
        goto out;
    }
    z->m = s->m;
    z->n = n;
    for (int i = 0; i < n; i++) {
        if (!labels[i]) {
            st = vit__fail(err, VIT_E_ARG, "label %d is NULL", i);
            goto out;
        }
        if (!(z->labels[i] = strdup(labels[i])) ||
            !(prompts[i] = fill_template(tmpl, labels[i]))) {
            st = vit__fail(err, VIT_E_NOMEM, "out of memory");
            goto out;
        }
    }
    if ((st = vit_embed_texts(s, (const char *const *)prompts, n, z->embeds,
                              err)))
        goto out;
    vit_l2_normalize(z->embeds, n, E);
    *out = z;
    z = NULL;
out:
    for (int i = 0; i < n && prompts; i++)
        free(prompts[i]);
    free(prompts);
    vit_zeroshot_free(z);
    return st;
}

static void zeroshot_head(vit_state *s, int i0, int B, void *p)
{
    classify_ctx *c = p;
    const vit_model *m = s->m;
    int E = m->proj_dim, L = c->z->n;
    float *emb = s->head; /* (B, E) */
    image_embeds(s, B, emb);
    for (int b = 0; b < B; b++) {
        float *row = c->probs; /* (L) logits, then reused by top_k */
        vit_match(m, emb + (size_t)b * E, 1, c->z->embeds, L, row, NULL,
                  NULL);
        if (c->logits)
            memcpy(c->logits + (size_t)(i0 + b) * L, row,
                   (size_t)L * sizeof *row);
        if (c->top_k > 0)
            top_k(row, L, c->top_k, c->out + (size_t)(i0 + b) * c->top_k,
                  c->z->labels, row + L, m->arch == VIT_ARCH_SIGLIP);
    }
}

vit_status vit_zeroshot_classify_pixels(vit_state *s, const vit_zeroshot *z,
                                        const float *pixels, int n, int top_k_n,
                                        vit_prediction *out, float *logits,
                                        vit_error *err)
{
    vit_status st = need_vision(s, pixels, n, err);
    if (st)
        return st;
    if (!z || z->m != s->m)
        return vit__fail(err, VIT_E_ARG,
                         "the label set belongs to another model");
    if (top_k_n < 0 || (top_k_n > 0 && !out))
        return vit__fail(err, VIT_E_ARG, "bad top_k or NULL output");
    classify_ctx c = {top_k_n, out, logits, NULL, z};
    c.probs = malloc(2 * (size_t)z->n * sizeof *c.probs);
    if (!c.probs)
        return vit__fail(err, VIT_E_NOMEM, "out of memory");
    vision_chunks(s, pixels, n, zeroshot_head, &c);
    free(c.probs);
    return vit__bctx_status(s->bctx, err);
}

/* ---- memory ---- */

#include <malloc.h> /* malloc_usable_size: what each block really holds */

/* The resident bytes of w's mappings in this process: the Rss of each
 * /proc/self/smaps area that starts inside one of them. */
static size_t mapped_resident(const vit__weights *w)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f)
        return 0;
    char line[512];
    size_t total = 0;
    int inside = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi, kib;
        /* An area's first line: "start-end perms offset dev inode path";
         * its fields' lines start with a name and a colon. */
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) {
            inside = 0;
            for (size_t i = 0; i < w->nmaps; i++) {
                uintptr_t a = (uintptr_t)w->maps[i].addr;
                if (lo >= a && lo < a + w->maps[i].len)
                    inside = 1;
            }
        } else if (inside && sscanf(line, "Rss: %lu kB", &kib) == 1) {
            total += (size_t)kib * 1024;
        }
    }
    fclose(f);
    return total;
}

void vit_state_memory(const vit_state *s, vit_memory *out)
{
    *out = (vit_memory){0};
    if (!s)
        return;
    const vit__weights *w = s->m->w;
    for (size_t i = 0; i < w->nmaps; i++)
        out->weights_mapped += w->maps[i].len;
    for (size_t i = 0; i < w->nowned; i++)
        out->weights_copied += malloc_usable_size(w->owned[i]);
    out->arena = malloc_usable_size(s->arena);
    out->weights_int8 = vit__encoder_int8_bytes(&s->m->vis.enc) +
                        vit__encoder_int8_bytes(&s->m->txt.enc);
    out->weights_bf16 = vit__encoder_bf16_bytes(&s->m->vis.enc) +
                        vit__encoder_bf16_bytes(&s->m->txt.enc);
    out->weights_dropped = w->dropped;
    out->weights_resident = mapped_resident(w);
}
