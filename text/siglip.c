/*
 * SigLIP's tokenizer as transformers 5 runs it: SiglipTokenizer, a Python
 * tokenizer over the sentencepiece library (there is no `tokenizers`
 * pipeline for it, and google/siglip-* hold only spiece.model), called as
 * SigLIP's processor is, truncation=True with max_length 64 and then
 * padded. For one text it does, in this order:
 *
 *   1. "▁" + the text with every "▁" (U+2581) made a space;
 *   2. cuts out the added tokens ("</s>", "<unk>", ...) where they occur in
 *      that raw text, leftmost first (their lstrip/rstrip flags strip the
 *      whitespace beside them, which step 3 strips anyway);
 *   3. canonicalizes each stretch between them (big_vision's
 *      canonicalize_text): Python's str.lower() when do_lower_case, the 32
 *      ASCII punctuation characters of string.punctuation removed, each run
 *      of Python whitespace (\s, str.isspace) made one space, and the ends
 *      stripped of whitespace;
 *   4. encodes "<unk>" + the stretch with the sentencepiece model and drops
 *      as many pieces as "<unk>" alone gives (transformers' way of keeping
 *      the library from adding its own "▁" prefix; a stretch that does not
 *      start with "▁" can share a piece with the ">" and lose it, which is
 *      the reference's behaviour and so ours);
 *   5. drops a first piece "▁" that an added special token follows;
 *   6. maps pieces to ids (an added token's text first, then the model's
 *      pieces; unknown ones to <unk>), keeps the first max_length - 1 ids
 *      and appends "</s>" unless the last id already is it.
 *
 * Python's str.lower() (Unicode 14 in Python 3.11) is utf8proc's simple
 * lowercase (Unicode 15) plus two things it lacks: 'İ' lowercases to
 * "i̇", and a capital sigma at the end of a word becomes 'ς' (the
 * Final_Sigma rule, for which Python's Cased and Case_Ignorable
 * properties are derived below from utf8proc's categories and small
 * tables). Both were checked against Python on every code point.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "text/text_impl.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* Case_Ignorable beyond the categories Mn, Me, Cf, Lm and Sk: the
 * Word_Break classes MidLetter, MidNumLet and Single_Quote. */
static const txt_range ign_extra[] = {
    {0x27, 0x27},     {0x2E, 0x2E},     {0x3A, 0x3A},     {0xB7, 0xB7},
    {0x387, 0x387},   {0x55F, 0x55F},   {0x5F4, 0x5F4},   {0x2018, 0x2019},
    {0x2024, 0x2024}, {0x2027, 0x2027}, {0xFE13, 0xFE13}, {0xFE52, 0xFE52},
    {0xFE55, 0xFE55}, {0xFF07, 0xFF07}, {0xFF0E, 0xFF0E}, {0xFF1A, 0xFF1A},
};

/* Characters of those categories that Unicode 15 (utf8proc) added and
 * Python 3.11's Unicode 14 does not know (unassigned there). */
static const txt_range new_in_15[] = {
    {0xECE, 0xECE},     {0x10EFD, 0x10EFF}, {0x11241, 0x11241},
    {0x11F00, 0x11F01}, {0x11F36, 0x11F3A}, {0x11F40, 0x11F40},
    {0x11F42, 0x11F42}, {0x13439, 0x13440}, {0x13447, 0x13455},
    {0x1DF25, 0x1DF2A}, {0x1E030, 0x1E06D}, {0x1E08F, 0x1E08F},
    {0x1E4EB, 0x1E4EF},
};

/* Cased beyond Lu, Ll and Lt (Other_Lowercase and Other_Uppercase that
 * are not also Case_Ignorable). */
static const txt_range cased_extra[] = {
    {0xAA, 0xAA},       {0xBA, 0xBA},       {0x2160, 0x217F},
    {0x24B6, 0x24E9},   {0x1F130, 0x1F149}, {0x1F150, 0x1F169},
    {0x1F170, 0x1F189},
};

/* The classes Final_Sigma looks at: 1 Case_Ignorable (which wins for a
 * character that is both), 2 Cased, 0 neither. */
static int sigma_class(int32_t c)
{
    if (c < 0x80) {
        if ((c | 32) >= 'a' && (c | 32) <= 'z')
            return 2;
        return c == '\'' || c == '.' || c == ':' || c == '^' || c == '`';
    }
    if (txt_in_ranges(new_in_15, COUNT(new_in_15), c))
        return 0;
    if (txt_in_ranges(ign_extra, COUNT(ign_extra), c))
        return 1;
    switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_SK:
        return 1;
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
        return 2;
    default:
        return txt_in_ranges(cased_extra, COUNT(cased_extra), c) ? 2 : 0;
    }
}

/* Python's str.isspace (and so re's \s and str.strip()): bidirectional
 * class WS, B or S, or category Zs. */
static int py_space(int32_t c)
{
    if (c <= 0x20)
        return c == 0x20 || (c >= 0x09 && c <= 0x0D) ||
               (c >= 0x1C && c <= 0x1F);
    return c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000;
}

static int put_cp(txt_buf *out, int32_t c)
{
    if (txt_buf_reserve(out, 4))
        return -1;
    out->n += (size_t)utf8proc_encode_char(c, out->p + out->n);
    return 0;
}

int txt_py_lower(const uint8_t *s, size_t n, txt_buf *out)
{
    for (size_t i = 0; i < n;) {
        int32_t c;
        int k = txt_utf8_decode(s + i, &c);
        if (c < 0x80) {
            if (txt_buf_reserve(out, 1))
                return -1;
            out->p[out->n++] = (uint8_t)((c >= 'A' && c <= 'Z') ? c + 32 : c);
        } else if (c == 0x130) {
            if (put_cp(out, 'i') || put_cp(out, 0x307))
                return -1;
        } else if (c == 0x3A3) {
            /* Final_Sigma: a Cased character before it and none after,
             * Case_Ignorable ones skipped on both sides. */
            int cls = 0;
            for (size_t j = i; j > 0;) {
                while (j > 0 && (s[j - 1] & 0xC0) == 0x80)
                    j--;
                j--;
                int32_t p;
                txt_utf8_decode(s + j, &p);
                if ((cls = sigma_class(p)) != 1)
                    break;
            }
            int final = cls == 2;
            for (size_t j = i + (size_t)k; final && j < n;) {
                int32_t q;
                j += (size_t)txt_utf8_decode(s + j, &q);
                if ((cls = sigma_class(q)) != 1) {
                    final = cls != 2;
                    break;
                }
            }
            if (put_cp(out, final ? 0x3C2 : 0x3C3))
                return -1;
        } else if (put_cp(out, utf8proc_tolower(c)))
            return -1;
        i += (size_t)k;
    }
    return 0;
}

/* string.punctuation */
static int ascii_punct(int32_t c)
{
    return c < 0x80 && c > 0x20 && c != 0x7F &&
           !((c | 32) >= 'a' && (c | 32) <= 'z') && !(c >= '0' && c <= '9');
}

/* canonicalize_text of valid UTF-8 s[0..n) into out (emptied first). */
static int canonicalize(const txt_tokenizer *t, const uint8_t *s, size_t n,
                        txt_buf *low, txt_buf *out)
{
    out->n = 0;
    if (t->lower) {
        low->n = 0;
        if (txt_py_lower(s, n, low))
            return -1;
        s = low->p, n = low->n;
    }
    if (txt_buf_reserve(out, n))
        return -1;
    int space = 0;
    for (size_t i = 0; i < n;) {
        int32_t c;
        int k = txt_utf8_decode(s + i, &c);
        if (ascii_punct(c)) {
        } else if (py_space(c))
            space = 1;
        else {
            if (space && out->n)
                out->p[out->n++] = ' ';
            space = 0;
            memcpy(out->p + out->n, s + i, (size_t)k);
            out->n += (size_t)k;
        }
        i += (size_t)k;
    }
    return 0;
}

/* ---- the pipeline ---- */

typedef struct {
    txt_tokenizer *t;
    txt_buf text, low, canon, in;
    txt_spm_scratch sc;
    int32_t *tok;           /* the tokens' ids so far */
    int n, cap, want;       /* want: enough to fill the output */
    int first_space;        /* the first token is the piece "▁" */
    int second_special;     /* the second is a special token */
} sig;

/* 0 to go on, 1 when enough tokens are in. */
static int emit(sig *g, int32_t id, int is_space, int special)
{
    if (g->n == 0)
        g->first_space = is_space;
    else if (g->n == 1)
        g->second_special = special;
    if (g->n == g->cap) {
        int cap = g->cap ? 2 * g->cap : 64;
        int32_t *p = realloc(g->tok, (size_t)cap * sizeof *p);
        if (!p)
            return -1;
        g->tok = p;
        g->cap = cap;
    }
    g->tok[g->n++] = id;
    return g->n >= g->want;
}

static int emit_added(void *ctx, const txt_added *a)
{
    return emit(ctx, a->id, 0, a->special);
}

static const txt_added *added_named(const txt_tokenizer *t, const uint8_t *s,
                                    size_t n)
{
    if (!t->raw_first[s[0]])
        return NULL;
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].n == n && !memcmp(t->added[i].s, s, n))
            return &t->added[i];
    return NULL;
}

static int chunk(void *ctx, const uint8_t *s, size_t n)
{
    sig *g = ctx;
    txt_tokenizer *t = g->t;
    const txt_spm *m = &t->spm;
    if (canonicalize(t, s, n, &g->low, &g->canon))
        return -1;
    g->in.n = 0;
    if (txt_buf_reserve(&g->in, t->unk_n + g->canon.n))
        return -1;
    memcpy(g->in.p, t->unk_str, t->unk_n);
    if (g->canon.n)
        memcpy(g->in.p + t->unk_n, g->canon.p, g->canon.n);
    g->in.n = t->unk_n + g->canon.n;
    long np = txt_spm_encode(m, g->in.p, g->in.n, &g->sc);
    if (np < 0)
        return -1;
    for (long i = np >= t->unk_pieces ? t->unk_pieces : 0; i < np; i++) {
        const txt_spm_piece *p = &g->sc.pieces[i];
        const uint8_t *ps = g->sc.norm.p + p->off;
        int32_t id = p->id;
        int special = 0;
        /* A byte piece from byte fallback is its "<0xXX>" name, found as
         * itself; any other piece is looked up by its text as
         * convert_tokens_to_ids does: added tokens first. */
        if (!(m->byte_fallback && m->type[id] == 6 && p->len == 1 &&
              id == m->byte_id[ps[0]])) {
            const txt_added *a = added_named(t, ps, p->len);
            if (a)
                id = a->id, special = a->special;
            else if (id == m->unk) {
                int32_t v = txt_spm_piece_id(m, ps, p->len);
                if (v >= 0)
                    id = v;
            }
        }
        int is_space = p->len == 3 && !memcmp(ps, "\xE2\x96\x81", 3);
        int r = emit(g, id, is_space, special);
        if (r)
            return r;
    }
    return 0;
}

static int run(sig *g, const uint8_t *s, size_t n)
{
    const txt_tokenizer *t = g->t;
    /* "▁" + the text, its own "▁"s made spaces. */
    if (txt_buf_reserve(&g->text, n + 3))
        return -1;
    memcpy(g->text.p, "\xE2\x96\x81", 3);
    g->text.n = 3;
    for (size_t i = 0; i < n; i++) {
        if (i + 3 <= n && !memcmp(s + i, "\xE2\x96\x81", 3)) {
            g->text.p[g->text.n++] = ' ';
            i += 2;
        } else
            g->text.p[g->text.n++] = s[i];
    }
    return txt_split_added(t, 0, t->n_added, t->raw_first, g->text.p,
                           g->text.n, chunk, emit_added, g);
}

int txt_siglip_encode(txt_tokenizer *t, const uint8_t *s, size_t n,
                      int32_t *ids, int max_ids)
{
    if (max_ids == 0)
        return 0;
    /* max_ids + 1 tokens decide the output: step 5 may drop the first. */
    sig g = {.t = t, .want = max_ids < INT_MAX ? max_ids + 1 : INT_MAX};
    int rc = run(&g, s, n);
    txt_buf_free(&g.text);
    txt_buf_free(&g.low);
    txt_buf_free(&g.canon);
    txt_buf_free(&g.in);
    txt_spm_scratch_free(&g.sc);
    if (rc < 0) {
        free(g.tok);
        return -1;
    }
    int32_t *tok = g.tok;
    int nt = g.n;
    if (nt > 1 && g.first_space && g.second_special)
        tok++, nt--;
    int k = nt < max_ids - 1 ? nt : max_ids - 1;
    if (k)
        memcpy(ids, tok, (size_t)k * sizeof *ids);
    if (k == 0 || ids[k - 1] != t->eos)
        ids[k++] = t->eos;
    free(g.tok);
    return k;
}
