/*
 * The special tokens of a loaded tokenizer, as transformers registers
 * them (tokenizer_config.json's, with each tokenizer class's defaults),
 * the padding and truncation sides, and the tables the encoder needs once
 * the files are read (CLIP's split regex and byte symbols, SigLIP's and
 * Gemma's).
 */
#include <stdlib.h>
#include <string.h>

#include "text/loader.h"

/* The split regex of transformers' CLIPTokenizer, for PCRE2. Two changes,
 * neither altering what it matches on normalized text: `\s` is a plain
 * space, the only whitespace normalization leaves; and the letter and
 * number classes name the letters and digits of Unicode 15 and 16, which
 * the reference's Oniguruma (Unicode 16) knows and PCRE2 10.42 (Unicode
 * 14) does not. With a newer PCRE2 these ranges repeat what \p{L} and
 * \p{N} already hold. */
#define XL                                                                 \
    "\\x{1C89}-\\x{1C8A}\\x{A7CB}-\\x{A7CD}\\x{A7DA}-\\x{A7DC}"            \
    "\\x{105C0}-\\x{105F3}\\x{10D4A}-\\x{10D65}\\x{10D6F}-\\x{10D85}"      \
    "\\x{10EC2}-\\x{10EC4}\\x{1123F}-\\x{11240}\\x{11380}-\\x{11389}"      \
    "\\x{1138B}\\x{1138E}\\x{11390}-\\x{113B5}\\x{113B7}\\x{113D1}"        \
    "\\x{113D3}\\x{11BC0}-\\x{11BE0}\\x{11F02}\\x{11F04}-\\x{11F10}"       \
    "\\x{11F12}-\\x{11F33}\\x{1342F}\\x{13441}-\\x{13446}"                 \
    "\\x{13460}-\\x{143FA}\\x{16100}-\\x{1611D}\\x{16D40}-\\x{16D6C}"      \
    "\\x{18CFF}\\x{1B132}\\x{1B155}\\x{1DF25}-\\x{1DF2A}"                  \
    "\\x{1E030}-\\x{1E06D}\\x{1E4D0}-\\x{1E4EB}\\x{1E5D0}-\\x{1E5ED}"      \
    "\\x{1E5F0}\\x{2B739}\\x{2EBF0}-\\x{2EE5D}\\x{31350}-\\x{323AF}"
#define XN                                                                 \
    "\\x{10D40}-\\x{10D49}\\x{116D0}-\\x{116E3}\\x{11BF0}-\\x{11BF9}"      \
    "\\x{11F50}-\\x{11F59}\\x{16130}-\\x{16139}\\x{16D70}-\\x{16D79}"      \
    "\\x{1CCF0}-\\x{1CCF9}\\x{1D2C0}-\\x{1D2D3}\\x{1E4F0}-\\x{1E4F9}"      \
    "\\x{1E5F1}-\\x{1E5FA}"
static const char split_pattern[] =
    "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d"
    "|[\\p{L}" XL "]+|[\\p{N}" XN "]|[^ \\p{L}\\p{N}" XL XN "]+";

/* ---- special tokens ---- */

/* transformers (tokenization_utils_base / _tokenizers) registers added
 * tokens in this order, a later registration of the same content setting
 * its flags: first the "decoder" (tokenizer_config.json's
 * added_tokens_decoder, or, when there is none, tokenizer.json's
 * added_tokens), then each special token below whose content the decoder
 * lacks: an AddedToken object with its own "normalized" flag, a string as
 * a raw-matched token. A special token missing from the vocabulary gets the
 * next new id, as tokenizers' add_tokens gives it. */
static const char *const special_keys[] = {
    "bos_token", "eos_token", "unk_token", "sep_token",
    "pad_token", "cls_token", "mask_token",
};

/* CLIPTokenizer's, SiglipTokenizer's or GemmaTokenizer's defaults for the
 * keys it names (TokenizersBackend, which runs a tokenizer.json with no
 * class, has none). */
static const char *special_default(const char *key, txt_kind kind, int as_is)
{
    static const char *const gemma[][2] = {
        {"bos_token", "<bos>"}, {"eos_token", "<eos>"},
        {"unk_token", "<unk>"}, {"pad_token", "<pad>"},
        {"mask_token", "<mask>"},
    };
    if (kind == TXT_KIND_GEMMA) {
        for (size_t i = 0; !as_is && i < sizeof gemma / sizeof *gemma; i++)
            if (!strcmp(key, gemma[i][0]))
                return gemma[i][1];
        return NULL;
    }
    if (kind == TXT_KIND_SIGLIP) {
        if (!strcmp(key, "eos_token") || !strcmp(key, "pad_token"))
            return "</s>";
        return !strcmp(key, "unk_token") ? "<unk>" : NULL;
    }
    if (!strcmp(key, "bos_token"))
        return "<|startoftext|>";
    if (!strcmp(key, "eos_token") || !strcmp(key, "unk_token") ||
        !strcmp(key, "pad_token"))
        return "<|endoftext|>";
    return NULL;
}

/* Registers one special token; *id gets its id (-1 if it has none) and
 * *text its content (NULL if none; it lives as long as v). */
static txt_status special_put(loader *L, json_t *v, const char *dflt,
                              int n_file, int32_t *id, const char **text,
                              size_t *text_n)
{
    const char *s = dflt;
    size_t n = dflt ? strlen(dflt) : 0;
    int normalized = 0;
    *id = -1;
    if (json_is_object(v)) {
        json_t *c = json_object_get(v, "content");
        if (!json_is_string(c))
            return txt__lfail(L, TXT_E_FORMAT, "a special token has no content");
        s = json_string_value(c);
        n = json_string_length(c);
        /* AddedToken's default: normalized unless special. */
        normalized = txt__flag_of(v, "normalized", !txt__flag_of(v, "special", 0));
    } else if (json_is_string(v)) {
        s = json_string_value(v);
        n = json_string_length(v);
    }
    if (!s || n == 0)
        return TXT_OK;
    *text = s, *text_n = n;
    for (int i = 0; i < L->n_added; i++)
        if (L->added[i].n == n && !memcmp(L->added[i].s, s, n)) {
            if (i < n_file) {  /* the decoder's token stands */
                *id = L->added[i].id;
                L->added[i].special = 1;
                return TXT_OK;
            }
            *id = L->added[i].id;
            break;
        }
    if (*id < 0)
        *id = txt__vocab_get(L, s, n);
    if (*id < 0)
        *id = L->max_id + 1;
    return txt__added_put(L, s, n, *id, normalized, 1);
}

txt_status txt__specials(loader *L, txt_tokenizer *t, json_t *cfg,
                         json_t *smap)
{
    int n_file = L->n_added, siglip = t->kind == TXT_KIND_SIGLIP;
    int gemma = t->kind == TXT_KIND_GEMMA;
    for (size_t k = 0; k < sizeof special_keys / sizeof *special_keys; k++) {
        const char *key = special_keys[k];
        json_t *v = json_object_get(smap, key);
        if (!v || json_is_null(v))
            v = json_object_get(cfg, key);
        int32_t id;
        const char *text = NULL;
        size_t text_n = 0;
        txt_status st = special_put(L, v, v && !json_is_null(v)
                                              ? NULL
                                              : special_default(key, t->kind,
                                                                L->as_is),
                                    n_file, &id, &text, &text_n);
        if (st)
            return st;
        if (!strcmp(key, "unk_token") && text) {
            free(t->unk_str);
            if (!(t->unk_str = malloc(text_n)))
                return txt__lfail(L, TXT_E_NOMEM, "out of memory");
            memcpy(t->unk_str, text, text_n);
            t->unk_n = text_n;
        }
        if (!strcmp(key, "bos_token"))
            t->bos = id;
        else if (!strcmp(key, "eos_token"))
            t->eos = id;
        else if (!strcmp(key, "unk_token"))
            t->unk = id;
        else if (!strcmp(key, "pad_token"))
            t->pad = id;
    }
    /* The extra special tokens (SiglipTokenizer's and GemmaTokenizer's
     * additional_special_tokens; transformers 5 writes
     * extra_special_tokens) are added tokens too. */
    for (int pass = 0; (siglip || gemma) && pass < 2; pass++) {
        json_t *list = json_object_get(
            cfg, pass ? "extra_special_tokens" : "additional_special_tokens");
        size_t i;
        json_t *v;
        json_array_foreach(list, i, v)
        {
            int32_t id;
            const char *text;
            size_t text_n;
            txt_status st = special_put(L, v, NULL, n_file, &id, &text,
                                        &text_n);
            if (st)
                return st;
        }
    }
    if (gemma && t->pad < 0 && t->eos < 0)
        return txt__lfail(L, TXT_E_FORMAT,
                    "there is neither a pad nor an eos token to pad with");
    if (!gemma && ((!siglip && t->bos < 0) || t->eos < 0))
        return txt__lfail(L, TXT_E_FORMAT, "the %s token is empty",
                    t->eos < 0 ? "eos" : "bos");
    if (siglip && !t->unk_str)
        return txt__lfail(L, TXT_E_FORMAT, "SigLIP's tokenizer needs an unk token");
    return TXT_OK;
}

static void byte_symbols(loader *L, txt_tokenizer *t)
{
    /* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for
     * themselves, the others for U+0100 onwards in byte order. */
    int next = 256;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) ||
                        (b >= 0xAE && b <= 0xFF);
        int cp = printable ? b : next++;
        char s[8];
        size_t n;
        if (cp < 0x80)
            s[0] = (char)cp, n = 1;
        else
            s[0] = (char)(0xC0 | cp >> 6), s[1] = (char)(0x80 | (cp & 0x3F)),
            n = 2;
        memcpy(s + n, "</w>", 4);
        t->byte_id[b] = txt__vocab_get(L, s, n);
        t->byte_eow_id[b] = txt__vocab_get(L, s, n + 4);
    }
}

/* What only SigLIP's tokenizer needs: do_lower_case, and how many pieces
 * the unk token's text alone gives (siglip.c, step 4). */
static txt_status finish_siglip(loader *L, txt_tokenizer *t, json_t *cfg)
{
    t->lower = txt__flag_of(cfg, "do_lower_case", 1);
    txt_spm_scratch sc = {0};
    long k = txt_spm_encode(&t->spm, t->unk_str, t->unk_n, &sc);
    txt_spm_scratch_free(&sc);
    if (k < 0)
        return txt__lfail(L, TXT_E_NOMEM, "out of memory");
    t->unk_pieces = (int)k;
    return TXT_OK;
}

/* What Gemma's BPE starts from: the vocabulary's one-character entries,
 * its "<0xNN>" byte pieces (in byte_id) and its unknown token: the one
 * tokenizer.json's model names for a file run as it is, else the
 * configuration's unk_token, which the class hands its BPE model. */
static txt_status gemma_tables(loader *L, txt_tokenizer *t)
{
    size_t n = 0, slots = 16;
    for (size_t i = 0; i <= L->mask; i++)
        n += L->map[i].s != NULL;
    while (slots < 2 * n)
        slots *= 2;
    if (!(t->chars = calloc(slots, sizeof *t->chars)))
        return txt__lfail(L, TXT_E_NOMEM, "out of memory");
    t->char_mask = slots - 1;
    for (size_t i = 0; i <= L->mask; i++) {
        const vslot *v = &L->map[i];
        int32_t c;
        if (!v->s || v->n == 0 ||
            txt_utf8_valid_prefix((const uint8_t *)v->s, v->n) != v->n ||
            (size_t)txt_utf8_decode((const uint8_t *)v->s, &c) != v->n)
            continue;
        uint32_t key = (uint32_t)c + 1;
        size_t j = txt_char_slot(key, t->char_mask);
        while (t->chars[j].key)
            j = (j + 1) & t->char_mask;
        t->chars[j] = (txt_char){key, v->id};
    }
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->byte_id[b] = txt__vocab_get(L, name, 6);
    }
    t->byte_fallback = 1;
    if (!L->as_is) {
        t->fuse_unk = 1;
        L->model_unk = (const char *)t->unk_str;
        L->model_unk_n = t->unk_n;
    }
    t->bpe_unk = L->model_unk ? txt__vocab_get(L, L->model_unk, L->model_unk_n)
                              : -1;
    return TXT_OK;
}

/* padding_side and truncation_side: the class's defaults (Gemma's class
 * pads on the left), and only right truncation is run. */
txt_status txt__sides(loader *L, txt_tokenizer *t, json_t *cfg)
{
    json_t *ps = json_object_get(cfg, "padding_side");
    json_t *ts = json_object_get(cfg, "truncation_side");
    t->pad_left = t->kind == TXT_KIND_GEMMA && !L->as_is;
    if (ps && !txt__str_is(ps, "left") && !txt__str_is(ps, "right"))
        return txt__lfail(L, TXT_E_FORMAT,
                    "padding_side is neither \"left\" nor \"right\"");
    if (ps)
        t->pad_left = txt__str_is(ps, "left");
    if (ts && !txt__str_is(ts, "right"))
        return txt__lfail(L, txt__str_is(ts, "left") ? TXT_E_UNSUPPORTED : TXT_E_FORMAT,
                    "truncation_side is not \"right\"");
    return TXT_OK;
}

txt_status txt__finish(loader *L, txt_tokenizer *t, json_t *cfg)
{
    int siglip = t->kind == TXT_KIND_SIGLIP, gemma = t->kind == TXT_KIND_GEMMA;
    json_t *ml = json_object_get(cfg, "model_max_length");
    if (json_is_number(ml) && json_number_value(ml) >= 1 &&
        json_number_value(ml) <= (1 << 24))
        t->max_length = (int)json_number_value(ml);
    else if (siglip && !ml)
        t->max_length = 64; /* SiglipTokenizer's default */
    txt_status st;
    if (gemma && (st = gemma_tables(L, t)))
        return st;
    if (!siglip && !gemma) {
        byte_symbols(L, t);
        t->prefix[0] = t->bos, t->n_prefix = 1; /* RobertaProcessing */
        t->suffix[0] = t->eos, t->n_suffix = 1;
    }

    /* Raw-matched added tokens first, each group's contents normalized as
     * the reference does before matching them. */
    t->added = calloc((size_t)L->n_added + 1, sizeof *t->added);
    if (!t->added)
        return txt__lfail(L, TXT_E_NOMEM, "out of memory");
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < L->n_added; i++) {
            txt_added *a = &L->added[i];
            /* A Python tokenizer (SigLIP's) matches every added token on
             * the raw text. */
            if (siglip)
                a->normalized = 0;
            if (a->normalized != pass)
                continue;
            txt_added *d = &t->added[t->n_added++];
            *d = *a;
            a->s = NULL;
            if (pass == 1) {
                txt_buf nb = {0}, rb = {0};
                if (txt_utf8_repair(d->s, d->n, &rb) ||
                    (gemma ? txt_gemma_normalize(rb.p, rb.n, t->lower, &nb)
                           : txt_normalize(rb.p, rb.n, &L->nsc, &nb))) {
                    txt_buf_free(&rb);
                    txt_buf_free(&nb);
                    return txt__lfail(L, TXT_E_NOMEM, "out of memory");
                }
                txt_buf_free(&rb);
                free(d->s);
                d->s = nb.p, d->n = nb.n;
                if (d->n == 0) { /* normalized to nothing: never matches */
                    free(d->s);
                    t->n_added--;
                    continue;
                }
            } else
                t->n_added_raw++;
            (pass ? t->norm_first : t->raw_first)[d->s[0]] = 1;
        }
    t->vocab_size = L->max_id + 1;
    if (siglip)
        return finish_siglip(L, t, cfg);
    if (gemma)
        return txt_cache_init(t) ? txt_fail(L->err, L->errlen, TXT_E_LIBRARY,
                                            "cannot set up the word cache")
                                 : TXT_OK;

    int ec;
    PCRE2_SIZE eo;
    t->re = pcre2_compile((PCRE2_SPTR)split_pattern, PCRE2_ZERO_TERMINATED,
                          PCRE2_UTF, &ec, &eo, NULL);
    if (!t->re)
        return txt_fail(L->err, L->errlen, TXT_E_LIBRARY,
                        "PCRE2 cannot compile the split regex (error %d)",
                        ec);
    pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE); /* optional: speed only */
    if (txt_cache_init(t))
        return txt_fail(L->err, L->errlen, TXT_E_LIBRARY,
                        "cannot set up the word cache");
    return TXT_OK;
}
