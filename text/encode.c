/*
 * The encoding pipeline of the `tokenizers` library as CLIP's and Gemma's
 * tokenizers run it: repair the UTF-8, cut out the added tokens that match
 * the raw text, normalize each stretch between them, cut out the added
 * tokens that match normalized text, split what is left into words (CLIP:
 * the CLIP regex, with PCRE2; Gemma: none, each piece is one word), BPE
 * each word, and frame the ids as the post-processor does (CLIP: bos and
 * eos). Tokens are produced left to right and the work stops as soon as
 * the truncated result is complete, since nothing to the right of a word
 * can change its tokens.
 */
#include <stdlib.h>
#include <string.h>

#include "text/text_impl.h"

/* One call's state; everything a call allocates hangs here. */
typedef struct {
    txt_tokenizer *t;
    txt_buf raw;           /* the repaired input, when it was not UTF-8 */
    txt_buf norm;          /* the current stretch, normalized */
    txt_norm_scratch nsc;
    txt_bpe_scratch bsc;
    pcre2_match_data *md;
    int32_t *out;          /* the text's ids go here ... */
    int n, cap;            /* ... n of them so far, room for cap */
} enc;

/* Each emit returns 0 to go on, 1 when the output is full, -1 on error. */
static int emit_id(enc *e, int32_t id)
{
    if (e->n < e->cap)
        e->out[e->n++] = id;
    return e->n >= e->cap;
}

static int emit_word(enc *e, const uint8_t *w, size_t n)
{
    const int32_t *ids;
    long k = txt_bpe_word(e->t, w, n, &e->bsc, &ids);
    if (k < 0)
        return -1;
    for (long i = 0; i < k && e->n < e->cap; i++)
        e->out[e->n++] = ids[i];
    return e->n >= e->cap;
}

/* Splits normalized text into words and encodes them. What the regex does
 * not match (spaces) is dropped. A match of the regex's special-token
 * alternatives is cut in three, as the ByteLevel pre-tokenizer's own regex
 * (GPT-2's) cuts it in the reference: "<|", the letters, "|>".
 * open_clip's SimpleTokenizer (t->openclip_clean), which runs the same
 * regex on its cleaned text (text/clean.c: NFC and lowercase done, the
 * tokenizer's added tokens not matched), tries its own special tokens
 * first, "<start_of_text>" and "<end_of_text>" (bos and eos), and matches
 * its contractions ignoring case, which after lowercasing makes "'ſ" one
 * ("'s"); transformers' special tokens are not special to it. */
static int split_words(void *ctx, const uint8_t *s, size_t n)
{
    enc *e = ctx;
    size_t off = 0;
    while (off < n) {
        int rc = pcre2_match(e->t->re, s, n, off, PCRE2_NO_UTF_CHECK, e->md,
                             NULL);
        if (rc == PCRE2_ERROR_NOMATCH)
            return 0;
        if (rc < 0)
            return -1;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
        size_t a = ov[0], b = ov[1];
        int r, oc = e->t->openclip_clean == TXT_OPENCLIP_SIMPLE;
        if (oc && n - a >= 15 && !memcmp(s + a, "<start_of_text>", 15))
            r = emit_id(e, e->t->bos), b = a + 15;
        else if (oc && n - a >= 13 && !memcmp(s + a, "<end_of_text>", 13))
            r = emit_id(e, e->t->eos), b = a + 13;
        else if (oc && n - a >= 3 && !memcmp(s + a, "'\xc5\xbf", 3))
            r = emit_word(e, s + a, 3), b = a + 3;
        else if ((b - a == 15 && !memcmp(s + a, "<|startoftext|>", 15)) ||
            (b - a == 13 && !memcmp(s + a, "<|endoftext|>", 13))) {
            if (!(r = emit_word(e, s + a, 2)) &&
                !(r = emit_word(e, s + a + 2, b - a - 4)) && !oc)
                r = emit_word(e, s + b - 2, 2);
            /* open_clip's regex has no such alternative: "|>" starts the
             * next run of punctuation. */
            if (oc)
                b -= 2;
        } else
            r = emit_word(e, s + a, b - a);
        if (r)
            return r;
        off = b > a ? b : b + 1;
    }
    return 0;
}

/* The leftmost, then longest, match in s[from..n) of the added tokens
 * lo..hi-1; returns its position (n if none) and the token in *which. */
static size_t find_added(const txt_tokenizer *t, int lo, int hi,
                         const uint8_t *first, const uint8_t *s, size_t n,
                         size_t from, int *which)
{
    if (lo == hi)
        return n;
    for (size_t i = from; i < n; i++) {
        if (!first[s[i]])
            continue;
        int best = -1;
        size_t bl = 0;
        for (int k = lo; k < hi; k++) {
            const txt_added *a = &t->added[k];
            if (a->n > bl && a->n <= n - i && !memcmp(s + i, a->s, a->n))
                best = k, bl = a->n;
        }
        if (best >= 0) {
            *which = best;
            return i;
        }
    }
    return n;
}

int txt_split_added(const txt_tokenizer *t, int lo, int hi,
                    const uint8_t *first, const uint8_t *s, size_t n,
                    int (*text)(void *ctx, const uint8_t *s, size_t n),
                    int (*token)(void *ctx, const txt_added *a), void *ctx)
{
    size_t pos = 0;
    while (pos < n) {
        int k = -1, r;
        size_t at = find_added(t, lo, hi, first, s, n, pos, &k);
        if (at > pos && (r = text(ctx, s + pos, at - pos)))
            return r;
        if (k < 0)
            break;
        if ((r = token(ctx, &t->added[k])))
            return r;
        pos = at + t->added[k].n;
    }
    return 0;
}

static int emit_added(void *ctx, const txt_added *a)
{
    return emit_id(ctx, a->id);
}

/* Gemma's pre-tokenizer, Split(" ", "merged_with_previous"), runs after
 * its normalizer has made every space "▁", so it never splits: each piece
 * of normalized text between added tokens is one word. */
static int whole_word(void *ctx, const uint8_t *s, size_t n)
{
    return emit_word(ctx, s, n);
}

/* One stretch of raw text between raw-matched added tokens. */
static int stretch(void *ctx, const uint8_t *s, size_t n)
{
    enc *e = ctx;
    const txt_tokenizer *t = e->t;
    int gemma = t->kind == TXT_KIND_GEMMA;
    e->norm.n = 0;
    if (gemma ? txt_gemma_normalize(s, n, t->lower, &e->norm)
              : txt_normalize(s, n, &e->nsc, &e->norm))
        return -1;
    return txt_split_added(t, t->n_added_raw, t->n_added, t->norm_first,
                           e->norm.p, e->norm.n,
                           gemma ? whole_word : split_words, emit_added, e);
}

static int run(enc *e, const uint8_t *s, size_t n)
{
    const txt_tokenizer *t = e->t;
    return txt_split_added(t, 0, t->n_added_raw, t->raw_first, s, n, stretch,
                           emit_added, e);
}

int txt_encode(txt_tokenizer *t, const char *text, size_t len, int32_t *ids,
               int max_ids)
{
    if (!t || max_ids < 0 || (max_ids > 0 && !ids) || (!text && len))
        return -1;
    if (max_ids == 0)
        return 0;
    if (t->kind == TXT_KIND_SIGLIP) {
        const uint8_t *s = (const uint8_t *)text;
        txt_buf raw = {0};
        if (len && txt_utf8_valid_prefix(s, len) < len) {
            if (txt_utf8_repair(s, len, &raw)) {
                txt_buf_free(&raw);
                return -1;
            }
            s = raw.p, len = raw.n;
        }
        int k = txt_siglip_encode(t, s, len, ids, max_ids);
        txt_buf_free(&raw);
        return k;
    }
    /* The prefix, the text truncated to what leaves room for the suffix,
     * the suffix. Below the two's length the reference does not truncate
     * at all: what fits of its whole output is written. */
    int np = t->n_prefix, ns = t->n_suffix, k = 0;
    for (; k < np && k < max_ids; k++)
        ids[k] = t->prefix[k];
    if (k == max_ids)
        return k;
    enc e = {.t = t, .out = ids + np,
             .cap = max_ids >= np + ns ? max_ids - np - ns : max_ids - np};
    int rc = 0;
    if (e.cap > 0 && len > 0) {
        const uint8_t *s = (const uint8_t *)text;
        size_t n = len;
        if (txt_utf8_valid_prefix(s, n) < n) {
            if (txt_utf8_repair(s, n, &e.raw))
                rc = -1;
            s = e.raw.p, n = e.raw.n;
        }
        txt_buf clean = {0};
        if (!rc && t->openclip_clean) {
            rc = txt_openclip_clean(
                s, n, t->openclip_clean == TXT_OPENCLIP_SIMPLE, &clean);
            s = clean.p, n = clean.n;
        }
        if (t->re && !(e.md = pcre2_match_data_create_from_pattern(t->re,
                                                                    NULL)))
            rc = -1;
        if (!rc)
            rc = t->openclip_clean == TXT_OPENCLIP_SIMPLE
                     ? split_words(&e, s, n)
                     : run(&e, s, n);
        pcre2_match_data_free(e.md);
        txt_buf_free(&e.raw);
        txt_buf_free(&clean);
        txt_buf_free(&e.norm);
        txt_norm_scratch_free(&e.nsc);
        txt_bpe_scratch_free(&e.bsc);
    }
    if (rc < 0)
        return -1;
    k = np + e.n;
    for (int j = 0; j < ns && k < max_ids; j++)
        ids[k++] = t->suffix[j];
    return k;
}

int txt_encode_padded(txt_tokenizer *t, const char *text, size_t len,
                      int32_t *ids, int max_ids)
{
    int k = txt_encode(t, text, len, ids, max_ids);
    if (k < 0)
        return -1;
    int32_t pad = t->pad >= 0 ? t->pad : t->eos;
    int lead = t->pad_left ? max_ids - k : 0;
    if (lead)
        memmove(ids + lead, ids, (size_t)k * sizeof *ids);
    for (int i = 0; i < max_ids - k; i++)
        ids[i + (lead ? 0 : k)] = pad;
    return k;
}
