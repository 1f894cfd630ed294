/*
 * CLIP's and SigLIP's text tower: token and position embeddings, the
 * shared encoder, the final layernorm, and pooling. CLIP's has a causal
 * mask and pools at the end-of-text token exactly as transformers does it
 * for both conventions of its config: eos_token_id == 2 (the original
 * openai/clip-* configs) pools at the argmax of the ids, any other value
 * at the first occurrence of eos_token_id. SigLIP's attends both ways,
 * to every token but the padding (the attention mask its tokenizer
 * returns, which transformers' pipelines pass on), and pools at the last
 * position, whatever it holds: its texts are padded to the full length.
 *
 * Dimension legend: B sequences, T tokens (the longest in the batch; the
 * rest padded), D hidden size, V vocabulary size.
 */
#include "vit/vit_impl.h"

#include <string.h>

int vit__text_pool_index(const vit__text *t, const int32_t *ids, int T)
{
    int best = 0;
    if (t->siglip)
        return T - 1;
    if (t->eos_id == 2) {
        for (int i = 1; i < T; i++)
            if (ids[i] > ids[best])
                best = i;
        return best;
    }
    for (int i = 0; i < T; i++)
        if (ids[i] == t->eos_id)
            return i;
    /* transformers takes index 0 of an empty match via argmax of a
     * boolean row; do the same so results agree even then. */
    return 0;
}

void vit__text_forward(const vit__text *t, const int32_t *ids,
                       const int *lens, int B, int T, float *x,
                       float *pooled, const vit__scratch *s)
{
    /* ids (B, T) -> x (B, T, D) -> pooled (B, D). */
    int D = t->D;
    for (int b = 0; b < B; b++)
        for (int i = 0; i < T; i++) {
            float *row = x + ((size_t)b * T + i) * D;
            const float *te = t->tok + (size_t)ids[(size_t)b * T + i] * D;
            const float *pe = t->pos + (size_t)i * D;
            for (int d = 0; d < D; d++)
                row[d] = te[d] + pe[d];
        }
    vit__encoder_forward(&t->enc, x, B, T, !t->siglip,
                         t->siglip ? lens : NULL, s);
    vit__pool_rest(s->pool);
    /* The layernorm is per token, so only the pooled rows need it. */
    for (int b = 0; b < B; b++) {
        int p = vit__text_pool_index(t, ids + (size_t)b * T, T);
        vit__layernorm(pooled + (size_t)b * D, x + ((size_t)b * T + p) * D,
                       t->ln_w, t->ln_b, 1, D, t->enc.eps);
    }
}
