/*
 * The kernels of the Transformer core, shaped op_forward(out, in, weights,
 * dims): the linear layer through OpenBLAS sgemm, layernorm, the activation
 * functions, row softmax, and multi-head self-attention with an optional
 * causal mask. They allocate nothing; scratch comes from the caller's
 * arena.
 *
 * Dimension legend:
 *   B batch, T tokens per sequence, C/D channels (hidden size),
 *   H heads, dh = D / H head size, M rows (B * T), N output features,
 *   K input features.
 */
#include "vit/vit_impl.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

void vit__linear(float *out, const float *in, const float *w, const float *b,
                 int M, int N, int K)
{
    /* out (M, N) = in (M, K) @ w (N, K)^T + b (N); w is PyTorch's
     * nn.Linear layout, used as stored. */
    if (b)
        for (int i = 0; i < M; i++)
            memcpy(out + (size_t)i * N, b, (size_t)N * sizeof *out);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, in, K,
                w, K, b ? 1.0f : 0.0f, out, N);
}

void vit__layernorm(float *out, const float *in, const float *w,
                    const float *b, int M, int C, float eps)
{
    /* Two passes in double, so the variance is not the difference of two
     * large numbers (what torch computes is within 1e-6 of this). */
    for (int i = 0; i < M; i++) {
        const float *x = in + (size_t)i * C;
        float *y = out + (size_t)i * C;
        double mean = 0, var = 0;
        for (int c = 0; c < C; c++)
            mean += x[c];
        mean /= C;
        for (int c = 0; c < C; c++) {
            double d = x[c] - mean;
            var += d * d;
        }
        var /= C;
        float rstd = (float)(1.0 / sqrt(var + eps));
        float m = (float)mean;
        for (int c = 0; c < C; c++)
            y[c] = (x[c] - m) * rstd * w[c] + b[c];
    }
}

void vit__activation(float *x, size_t n, vit__act act)
{
    switch (act) {
    case VIT_ACT_GELU:
        for (size_t i = 0; i < n; i++)
            x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * (float)M_SQRT1_2));
        break;
    case VIT_ACT_GELU_TANH:
        for (size_t i = 0; i < n; i++) {
            float v = x[i];
            float u = 0.7978845608028654f * (v + 0.044715f * v * v * v);
            x[i] = 0.5f * v * (1.0f + tanhf(u));
        }
        break;
    case VIT_ACT_QUICK_GELU:
        for (size_t i = 0; i < n; i++)
            x[i] = x[i] / (1.0f + expf(-1.702f * x[i]));
        break;
    case VIT_ACT_SILU:
        for (size_t i = 0; i < n; i++)
            x[i] = x[i] / (1.0f + expf(-x[i]));
        break;
    case VIT_ACT_RELU:
        for (size_t i = 0; i < n; i++)
            x[i] = x[i] > 0 ? x[i] : 0;
        break;
    case VIT_ACT_TANH:
        for (size_t i = 0; i < n; i++)
            x[i] = tanhf(x[i]);
        break;
    }
}

void vit__softmax(float *x, int rows, int cols)
{
    for (int r = 0; r < rows; r++) {
        float *p = x + (size_t)r * cols;
        float mx = -INFINITY;
        for (int c = 0; c < cols; c++)
            mx = p[c] > mx ? p[c] : mx;
        double sum = 0;
        for (int c = 0; c < cols; c++) {
            p[c] = expf(p[c] - mx);
            sum += p[c];
        }
        float inv = (float)(1.0 / sum);
        for (int c = 0; c < cols; c++)
            p[c] *= inv;
    }
}

void vit__attention(float *out, const float *q, const float *k,
                    const float *v, float *scores, int B, int T, int D, int H,
                    int causal)
{
    /* q, k, v, out: (B, T, D) with head h in columns [h*dh, (h+1)*dh);
     * scores: (T, T) scratch, one head at a time. */
    int dh = D / H;
    float scale = 1.0f / sqrtf((float)dh);
    for (int b = 0; b < B; b++) {
        size_t base = (size_t)b * T * D;
        for (int h = 0; h < H; h++) {
            const float *qh = q + base + (size_t)h * dh;
            const float *kh = k + base + (size_t)h * dh;
            const float *vh = v + base + (size_t)h * dh;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, dh,
                        scale, qh, D, kh, D, 0.0f, scores, T);
            if (causal)
                for (int i = 0; i < T; i++)
                    for (int j = i + 1; j < T; j++)
                        scores[(size_t)i * T + j] = -INFINITY;
            vit__softmax(scores, T, T);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, dh, T,
                        1.0f, scores, T, vh, D, 0.0f,
                        out + base + (size_t)h * dh, D);
        }
    }
}

int vit__act_parse(const char *name)
{
    static const struct {
        const char *name;
        vit__act act;
    } acts[] = {
        {"gelu", VIT_ACT_GELU},
        {"gelu_new", VIT_ACT_GELU_TANH},
        {"gelu_pytorch_tanh", VIT_ACT_GELU_TANH},
        {"gelu_fast", VIT_ACT_GELU_TANH},
        {"quick_gelu", VIT_ACT_QUICK_GELU},
        {"silu", VIT_ACT_SILU},
        {"swish", VIT_ACT_SILU},
        {"relu", VIT_ACT_RELU},
        {"tanh", VIT_ACT_TANH},
    };
    for (size_t i = 0; i < sizeof acts / sizeof *acts; i++)
        if (strcmp(name, acts[i].name) == 0)
            return (int)acts[i].act;
    return -1;
}
