/*
 * Loading a tokenizer from a Hugging Face model directory: for CLIP the
 * vocabulary and merges from tokenizer.json (checked to be CLIP's kind) or
 * from vocab.json + merges.txt, for SigLIP the SentencePiece model
 * spiece.model (read by spm.c, its pieces then being the vocabulary); the
 * special and added tokens and model_max_length from tokenizer_config.json,
 * with each class's defaults; and the derived tables the encoder needs
 * (CLIP's: the symbol of each byte, the merge table, the split regex, the
 * word cache). CLIP's string-to-id map lives only while loading: encoding
 * works on ids alone. The status messages live here too.
 */
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "text/text_impl.h"

static const char *const status_msg[] = {
#define TXT_STATUS_MSG(name, msg) msg,
    TXT_STATUS_LIST(TXT_STATUS_MSG)
#undef TXT_STATUS_MSG
};

const char *txt_status_str(txt_status st)
{
    if ((unsigned)st >= sizeof status_msg / sizeof status_msg[0])
        return "unknown status";
    return status_msg[st];
}

txt_status txt_fail(char *err, size_t errlen, txt_status st, const char *fmt,
                    ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return st;
}

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

/* The Split regexes a CLIP tokenizer.json may hold: transformers' current
 * one, and the older one without the special tokens. Either way the
 * reference (transformers 5) splits with the current one. */
static const char *const clip_regex[] = {
    "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|"
    "[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+",
    "'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+",
};

/* ---- the vocabulary while loading ---- */

typedef struct {
    const char *s;  /* NULL: empty slot */
    size_t n;
    int32_t id;
} vslot;

typedef struct {
    char path[4096];     /* the file being read, for messages */
    char *err;
    size_t errlen;
    vslot *map;
    size_t mask;
    int32_t max_id;
    txt_added *added;
    int n_added, cap_added;
    txt_norm_scratch nsc;
    const txt_spm *spm;  /* SigLIP: the vocabulary is the model's pieces */
    int gemma;           /* loading Gemma's tokenizer */
    int as_is;           /* Gemma's tokenizer.json run with no class */
    const char *model_unk; /* its BPE model's unk_token, or NULL */
    size_t model_unk_n;
} loader;

static uint64_t str_hash(const char *s, size_t n)
{
    uint64_t h = TXT_FNV_INIT;
    for (size_t i = 0; i < n; i++)
        h = txt_fnv_step(h, (uint8_t)s[i]);
    return h;
}

static int32_t vocab_get(const loader *L, const char *s, size_t n)
{
    if (L->spm)
        return txt_spm_piece_id(L->spm, (const uint8_t *)s, n);
    for (size_t i = str_hash(s, n) & L->mask; L->map[i].s;
         i = (i + 1) & L->mask)
        if (L->map[i].n == n && !memcmp(L->map[i].s, s, n))
            return L->map[i].id;
    return -1;
}

static txt_status fail(loader *L, txt_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static txt_status fail(loader *L, txt_status st, const char *fmt, ...)
{
    if (L->err && L->errlen) {
        int k = snprintf(L->err, L->errlen, "%s: ", L->path);
        if (k >= 0 && (size_t)k < L->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(L->err + k, L->errlen - (size_t)k, fmt, ap);
            va_end(ap);
        }
    }
    return st;
}

/* Builds the string-to-id map of a vocab object (keys stay owned by the
 * JSON document). */
static txt_status vocab_build(loader *L, json_t *vocab)
{
    if (!json_is_object(vocab))
        return fail(L, TXT_E_FORMAT, "the vocabulary is not a JSON object");
    size_t n = json_object_size(vocab), slots = 16;
    if (n == 0)
        return fail(L, TXT_E_FORMAT, "the vocabulary is empty");
    while (slots < 2 * n)
        slots *= 2;
    L->map = calloc(slots, sizeof *L->map);
    if (!L->map)
        return fail(L, TXT_E_NOMEM, "no memory for the vocabulary");
    L->mask = slots - 1;
    const char *key;
    size_t klen;
    json_t *v;
    json_object_keylen_foreach(vocab, key, klen, v)
    {
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) >= INT32_MAX)
            return fail(L, TXT_E_FORMAT,
                        "the id of \"%.40s\" is not an integer from 0 to "
                        "2^31-2",
                        key);
        int32_t id = (int32_t)json_integer_value(v);
        size_t i = str_hash(key, klen) & L->mask;
        while (L->map[i].s)
            i = (i + 1) & L->mask;
        L->map[i] = (vslot){key, klen, id};
        if (id > L->max_id)
            L->max_id = id;
    }
    return TXT_OK;
}

/* Looks up merge number `rank`, the pair a b, and enters it. */
static txt_status merge_add(loader *L, txt_tokenizer *t, uint32_t rank,
                            const char *a, size_t an, const char *b,
                            size_t bn)
{
    int32_t ia = vocab_get(L, a, an), ib = vocab_get(L, b, bn);
    if (ia < 0 || ib < 0)
        return fail(L, TXT_E_FORMAT,
                    "merge %u (\"%.*s %.*s\"): \"%.*s\" is not in the "
                    "vocabulary",
                    rank + 1, (int)an, a, (int)bn, b,
                    (int)(ia < 0 ? an : bn), ia < 0 ? a : b);
    char buf[256];
    char *cat = an + bn <= sizeof buf ? buf : malloc(an + bn);
    if (!cat)
        return fail(L, TXT_E_NOMEM, "out of memory");
    memcpy(cat, a, an);
    memcpy(cat + an, b, bn);
    int32_t id = vocab_get(L, cat, an + bn);
    if (cat != buf)
        free(cat);
    if (id < 0)
        return fail(L, TXT_E_FORMAT,
                    "merge %u (\"%.*s %.*s\"): the merged token is not in "
                    "the vocabulary",
                    rank + 1, (int)an, a, (int)bn, b);
    txt_merges_put(t, ia, ib, rank, id);
    return TXT_OK;
}

/* ---- added tokens ---- */

/* Adds (or, for a content already there, updates) an added token. */
static txt_status added_put(loader *L, const char *s, size_t n, int32_t id,
                            int normalized, int special)
{
    if (n == 0)
        return fail(L, TXT_E_FORMAT, "an added token is empty");
    for (int i = 0; i < L->n_added; i++)
        if (L->added[i].n == n && !memcmp(L->added[i].s, s, n)) {
            L->added[i].id = id;
            L->added[i].normalized = normalized;
            L->added[i].special |= special;
            return TXT_OK;
        }
    if (L->n_added == L->cap_added) {
        int cap = L->cap_added ? 2 * L->cap_added : 8;
        txt_added *p = realloc(L->added, (size_t)cap * sizeof *p);
        if (!p)
            return fail(L, TXT_E_NOMEM, "out of memory");
        L->added = p;
        L->cap_added = cap;
    }
    uint8_t *c = malloc(n);
    if (!c)
        return fail(L, TXT_E_NOMEM, "out of memory");
    memcpy(c, s, n);
    L->added[L->n_added++] = (txt_added){c, n, id, normalized, special};
    if (id > L->max_id)
        L->max_id = id;
    return TXT_OK;
}

static int flag_of(json_t *o, const char *k, int dflt)
{
    json_t *v = json_object_get(o, k);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

/* One AddedToken object ({"content": ..., "normalized": ..., ...}). */
static txt_status added_from_json(loader *L, json_t *o, int32_t id)
{
    json_t *c = json_object_get(o, "content");
    if (!json_is_string(c))
        return fail(L, TXT_E_FORMAT, "added token %d has no content", id);
    /* SigLIP's lstrip and rstrip strip what its canonicalization strips
     * anyway (siglip.c); CLIP's and Gemma's tokens have neither. */
    if ((!L->spm && (flag_of(o, "lstrip", 0) || flag_of(o, "rstrip", 0))) ||
        flag_of(o, "single_word", 0))
        return fail(L, TXT_E_UNSUPPORTED,
                    "added token \"%.40s\" uses %s, which %s's do not",
                    json_string_value(c),
                    L->spm ? "single_word" : "lstrip, rstrip or single_word",
                    L->spm ? "SigLIP" : L->gemma ? "Gemma" : "CLIP");
    /* tokenizers' default: special tokens are matched on the raw text.
     * Its add_tokens takes the vocabulary's id when there is one. */
    int normalized = flag_of(o, "normalized", !flag_of(o, "special", 0));
    int32_t vid = vocab_get(L, json_string_value(c), json_string_length(c));
    return added_put(L, json_string_value(c), json_string_length(c),
                     vid >= 0 ? vid : id, normalized, flag_of(o, "special", 0));
}

/* ---- files ---- */

static int file_exists(const char *dir, const char *name)
{
    char p[4096];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static txt_status json_open(loader *L, const char *dir, const char *name,
                            size_t flags, json_t **out)
{
    snprintf(L->path, sizeof L->path, "%s/%s", dir, name);
    json_error_t je;
    *out = json_load_file(L->path, JSON_ALLOW_NUL | flags, &je);
    if (!*out) {
        FILE *f = fopen(L->path, "rb");
        if (!f)
            return fail(L, TXT_E_IO, "%s", strerror(errno));
        fclose(f);
        return fail(L, TXT_E_FORMAT, "line %d: %s", je.line, je.text);
    }
    return TXT_OK;
}

static int type_is(json_t *o, const char *type)
{
    json_t *t = json_object_get(o, "type");
    return json_is_string(t) && !strcmp(json_string_value(t), type);
}

static int str_is(json_t *v, const char *s)
{
    return json_is_string(v) && !strcmp(json_string_value(v), s);
}

/* A tokenizer_class naming `name`, with or without "Fast" (which
 * transformers 5 drops). */
static int class_is(json_t *cls, const char *name)
{
    size_t n = strlen(name);
    return json_is_string(cls) &&
           !strncmp(json_string_value(cls), name, n) &&
           (!json_string_value(cls)[n] ||
            !strcmp(json_string_value(cls) + n, "Fast"));
}

/* Checks that tokenizer.json describes CLIP's pipeline. */
static txt_status check_clip_kind(loader *L, json_t *root)
{
    json_t *nz = json_object_get(root, "normalizer");
    json_t *ns = json_object_get(nz, "normalizers");
    json_t *rp = json_array_get(ns, 1);
    if (!type_is(nz, "Sequence") || json_array_size(ns) != 3 ||
        !type_is(json_array_get(ns, 0), "NFC") || !type_is(rp, "Replace") ||
        !str_is(json_object_get(json_object_get(rp, "pattern"), "Regex"),
                "\\s+") ||
        !str_is(json_object_get(rp, "content"), " ") ||
        !type_is(json_array_get(ns, 2), "Lowercase"))
        return fail(L, TXT_E_UNSUPPORTED,
                    "the normalizer is not CLIP's (NFC, whitespace runs to "
                    "one space, lowercase)");

    json_t *pt = json_object_get(root, "pre_tokenizer");
    json_t *ps = json_object_get(pt, "pretokenizers");
    json_t *sp = json_array_get(ps, 0), *bl = json_array_get(ps, 1);
    json_t *re = json_object_get(json_object_get(sp, "pattern"), "Regex");
    int known = 0;
    for (size_t i = 0; i < sizeof clip_regex / sizeof clip_regex[0]; i++)
        known |= str_is(re, clip_regex[i]);
    if (!type_is(pt, "Sequence") || json_array_size(ps) != 2 ||
        !type_is(sp, "Split") || !known ||
        !str_is(json_object_get(sp, "behavior"), "Removed") ||
        !flag_of(sp, "invert", 0) || !type_is(bl, "ByteLevel") ||
        flag_of(bl, "add_prefix_space", 1))
        return fail(L, TXT_E_UNSUPPORTED,
                    "the pre-tokenizer is not CLIP's (the CLIP split regex, "
                    "then ByteLevel without a prefix space)");

    json_t *m = json_object_get(root, "model");
    json_t *mt = json_object_get(m, "type");
    if (!json_is_object(m) || (mt && !str_is(mt, "BPE")))
        return fail(L, TXT_E_UNSUPPORTED, "the model is not BPE");
    if (!str_is(json_object_get(m, "end_of_word_suffix"), "</w>"))
        return fail(L, TXT_E_UNSUPPORTED,
                    "the BPE model's end_of_word_suffix is not \"</w>\"");
    return TXT_OK;
}

/* Splits "a b" at its one space (the reference wants exactly two parts). */
static int split_pair(const char *s, size_t n, size_t *an)
{
    const char *sp = memchr(s, ' ', n);
    if (!sp || memchr(sp + 1, ' ', n - (size_t)(sp - s) - 1))
        return -1;
    *an = (size_t)(sp - s);
    return 0;
}

/* Gemma's tokenizer.json. With a class named (GemmaTokenizer,
 * Siglip2Tokenizer) transformers 5 takes only the vocabulary, the merges,
 * the added tokens and the post-processor from it and builds the rest
 * itself, whatever the file says: normalizer Replace(" ", "▁") (after
 * Lowercase for Siglip2Tokenizer), pre-tokenizer Split(" "), BPE with
 * byte fallback and fuse_unk. With none (TokenizersBackend) it runs the
 * file, which must then describe that same pipeline. */
static txt_status check_gemma_kind(loader *L, txt_tokenizer *t, json_t *root)
{
    json_t *nz = json_object_get(root, "normalizer");
    json_t *ns = type_is(nz, "Sequence") ? json_object_get(nz, "normalizers")
                                         : NULL;
    size_t nn = ns ? json_array_size(ns) : 1;
    json_t *rp = ns ? json_array_get(ns, nn - 1) : nz;
    t->lower = nn == 2 && type_is(json_array_get(ns, 0), "Lowercase");
    if (nn < 1 || nn > 1 + (size_t)t->lower || !type_is(rp, "Replace") ||
        !str_is(json_object_get(json_object_get(rp, "pattern"), "String"),
                " ") ||
        !str_is(json_object_get(rp, "content"), "\xE2\x96\x81"))
        return fail(L, TXT_E_UNSUPPORTED,
                    "the normalizer is not Gemma's (spaces to \"\xE2\x96\x81\", "
                    "after a Lowercase or not)");
    json_t *pt = json_object_get(root, "pre_tokenizer");
    if (pt && !json_is_null(pt) &&
        !(type_is(pt, "Split") &&
          str_is(json_object_get(json_object_get(pt, "pattern"), "String"),
                 " ") &&
          str_is(json_object_get(pt, "behavior"), "MergedWithPrevious") &&
          !flag_of(pt, "invert", 0)))
        return fail(L, TXT_E_UNSUPPORTED,
                    "the pre-tokenizer is not Gemma's (none, or a split "
                    "at spaces)");
    json_t *m = json_object_get(root, "model");
    json_t *dr = json_object_get(m, "dropout");
    json_t *pre = json_object_get(m, "continuing_subword_prefix");
    json_t *suf = json_object_get(m, "end_of_word_suffix");
    if ((dr && !json_is_null(dr)) || (pre && !json_is_null(pre)) ||
        (suf && !json_is_null(suf)) || flag_of(m, "ignore_merges", 0))
        return fail(L, TXT_E_UNSUPPORTED,
                    "the BPE model uses dropout, a subword prefix or "
                    "suffix, or ignore_merges, which Gemma's does not");
    t->fuse_unk = flag_of(m, "fuse_unk", 0);
    return TXT_OK;
}

/* tokenizer.json's post-processor: nothing, or a TemplateProcessing whose
 * single-sequence template is special tokens around $A. */
static txt_status read_template(loader *L, txt_tokenizer *t, json_t *root)
{
    json_t *pp = json_object_get(root, "post_processor");
    if (!pp || json_is_null(pp))
        return TXT_OK;
    json_t *single = json_object_get(pp, "single");
    json_t *sp = json_object_get(pp, "special_tokens");
    if (!type_is(pp, "TemplateProcessing") || !json_is_array(single))
        return fail(L, TXT_E_UNSUPPORTED,
                    "the post-processor is not a TemplateProcessing");
    int seen_a = 0;
    size_t i;
    json_t *item;
    json_array_foreach(single, i, item)
    {
        json_t *seq = json_object_get(item, "Sequence");
        json_t *tok = json_object_get(item, "SpecialToken");
        if (seq) {
            if (seen_a++ || !str_is(json_object_get(seq, "id"), "A"))
                return fail(L, TXT_E_UNSUPPORTED,
                            "the post-processor's template is not special "
                            "tokens around one $A");
            continue;
        }
        const char *name = json_string_value(json_object_get(tok, "id"));
        json_t *ids = json_object_get(json_object_get(sp, name ? name : ""),
                                      "ids");
        if (!json_is_array(ids))
            return fail(L, TXT_E_FORMAT,
                        "the post-processor's template names a special "
                        "token it does not define");
        size_t j;
        json_t *v;
        json_array_foreach(ids, j, v)
        {
            int *n = seen_a ? &t->n_suffix : &t->n_prefix;
            if (!json_is_integer(v) || json_integer_value(v) < 0 ||
                json_integer_value(v) >= INT32_MAX || *n == TXT_MAX_FRAME)
                return fail(L, TXT_E_FORMAT,
                            "the post-processor's ids are not %d or fewer "
                            "ids",
                            TXT_MAX_FRAME);
            (seen_a ? t->suffix : t->prefix)[(*n)++] =
                (int32_t)json_integer_value(v);
            if (json_integer_value(v) > L->max_id)
                L->max_id = (int32_t)json_integer_value(v);
        }
    }
    if (!seen_a)
        return fail(L, TXT_E_UNSUPPORTED,
                    "the post-processor's template has no $A");
    return TXT_OK;
}

/* `gemma`: 0 for CLIP's tokenizer.json, 1 for Gemma's read for a class
 * (GemmaTokenizer, Siglip2Tokenizer), 2 for Gemma's run as it is. */
static txt_status load_tokenizer_json(loader *L, txt_tokenizer *t,
                                      json_t *root, int use_added, int gemma)
{
    txt_status st;
    if (gemma == 2) {
        json_t *tr = json_object_get(root, "truncation");
        if (tr && !json_is_null(tr))
            return fail(L, TXT_E_UNSUPPORTED,
                        "it sets a truncation of its own");
    }
    if ((st = gemma == 0   ? check_clip_kind(L, root)
              : gemma == 2 ? check_gemma_kind(L, t, root)
                           : TXT_OK))
        return st;
    json_t *model = json_object_get(root, "model");
    if (gemma && (st = read_template(L, t, root)))
        return st;
    if ((st = vocab_build(L, json_object_get(model, "vocab"))))
        return st;
    json_t *unk = json_object_get(model, "unk_token");
    if (gemma == 2 && json_is_string(unk)) {
        L->model_unk = json_string_value(unk);
        L->model_unk_n = json_string_length(unk);
    }
    json_t *merges = json_object_get(model, "merges");
    if (!json_is_array(merges))
        return fail(L, TXT_E_FORMAT, "model.merges is not an array");
    if (txt_merges_alloc(t, json_array_size(merges)))
        return fail(L, TXT_E_NOMEM, "no memory for the merges");
    size_t i;
    json_t *m;
    json_array_foreach(merges, i, m)
    {
        const char *a, *b;
        size_t an, bn;
        if (json_is_string(m)) {
            const char *s = json_string_value(m);
            size_t n = json_string_length(m);
            if (split_pair(s, n, &an))
                return fail(L, TXT_E_FORMAT,
                            "merge %zu (\"%.40s\") is not two tokens "
                            "separated by one space",
                            i + 1, s);
            a = s, b = s + an + 1, bn = n - an - 1;
        } else if (json_is_array(m) && json_array_size(m) == 2 &&
                   json_is_string(json_array_get(m, 0)) &&
                   json_is_string(json_array_get(m, 1))) {
            a = json_string_value(json_array_get(m, 0));
            an = json_string_length(json_array_get(m, 0));
            b = json_string_value(json_array_get(m, 1));
            bn = json_string_length(json_array_get(m, 1));
        } else
            return fail(L, TXT_E_FORMAT,
                        "merge %zu is neither \"a b\" nor [\"a\", \"b\"]",
                        i + 1);
        if ((st = merge_add(L, t, (uint32_t)i, a, an, b, bn)))
            return st;
    }
    json_t *added = json_object_get(root, "added_tokens");
    if (added && !json_is_array(added))
        return fail(L, TXT_E_FORMAT, "added_tokens is not an array");
    if (!use_added)
        return TXT_OK;
    json_array_foreach(added, i, m)
    {
        json_t *id = json_object_get(m, "id");
        if (!json_is_integer(id) || json_integer_value(id) < 0 ||
            json_integer_value(id) >= INT32_MAX)
            return fail(L, TXT_E_FORMAT, "added token %zu has no valid id",
                        i + 1);
        if ((st = added_from_json(L, m, (int32_t)json_integer_value(id))))
            return st;
    }
    return TXT_OK;
}

/* Reads a whole file into b. */
static txt_status read_file(loader *L, txt_buf *b)
{
    FILE *f = fopen(L->path, "rb");
    if (!f)
        return fail(L, TXT_E_IO, "%s", strerror(errno));
    size_t got = 0;
    do {
        if (txt_buf_reserve(b, 65536)) {
            fclose(f);
            return fail(L, TXT_E_NOMEM, "out of memory");
        }
        got = fread(b->p + b->n, 1, 65536, f);
        b->n += got;
    } while (got > 0);
    int ioerr = ferror(f);
    fclose(f);
    return ioerr ? fail(L, TXT_E_IO, "read error") : TXT_OK;
}

/* SigLIP's spiece.model; its pieces are the vocabulary from here on. */
static txt_status load_spiece(loader *L, txt_tokenizer *t, const char *dir)
{
    snprintf(L->path, sizeof L->path, "%s/spiece.model", dir);
    txt_buf b = {0};
    txt_status st = read_file(L, &b);
    if (!st)
        st = txt_spm_load(&t->spm, b.p, b.n, L->path, L->err, L->errlen);
    txt_buf_free(&b);
    if (st)
        return st;
    L->spm = &t->spm;
    L->max_id = t->spm.n - 1;
    return TXT_OK;
}

static txt_status load_vocab_merges(loader *L, txt_tokenizer *t,
                                    const char *dir, json_t **root)
{
    txt_status st = json_open(L, dir, "vocab.json", 0, root);
    if (st)
        return st;
    if ((st = vocab_build(L, *root)))
        return st;

    snprintf(L->path, sizeof L->path, "%s/merges.txt", dir);
    txt_buf b = {0};
    if ((st = read_file(L, &b))) {
        txt_buf_free(&b);
        return st;
    }

    size_t lines = 1;
    for (size_t i = 0; i < b.n; i++)
        lines += b.p[i] == '\n';
    if (txt_merges_alloc(t, lines)) {
        txt_buf_free(&b);
        return fail(L, TXT_E_NOMEM, "no memory for the merges");
    }
    /* As Rust's BufRead::lines reads it: "\n" or "\r\n" ends a line, a
     * final newline adds no empty line; lines starting "#version" are
     * skipped, every other must be two tokens and one space. */
    uint32_t rank = 0;
    size_t line = 0;
    for (size_t i = 0; i < b.n;) {
        const uint8_t *nl = memchr(b.p + i, '\n', b.n - i);
        size_t end = nl ? (size_t)(nl - b.p) : b.n, n = end - i;
        const char *s = (const char *)b.p + i;
        line++;
        i = nl ? end + 1 : b.n;
        if (n && s[n - 1] == '\r' && nl)
            n--;
        if (n >= 8 && !memcmp(s, "#version", 8))
            continue;
        size_t an;
        if (split_pair(s, n, &an)) {
            st = fail(L, TXT_E_FORMAT,
                      "line %zu (\"%.*s\") is not two tokens separated by "
                      "one space",
                      line, (int)(n < 40 ? n : 40), s);
            break;
        }
        if ((st = merge_add(L, t, rank++, s, an, s + an + 1, n - an - 1)))
            break;
    }
    txt_buf_free(&b);
    return st;
}

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
            return fail(L, TXT_E_FORMAT, "a special token has no content");
        s = json_string_value(c);
        n = json_string_length(c);
        /* AddedToken's default: normalized unless special. */
        normalized = flag_of(v, "normalized", !flag_of(v, "special", 0));
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
        *id = vocab_get(L, s, n);
    if (*id < 0)
        *id = L->max_id + 1;
    return added_put(L, s, n, *id, normalized, 1);
}

static txt_status specials(loader *L, txt_tokenizer *t, json_t *cfg,
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
                return fail(L, TXT_E_NOMEM, "out of memory");
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
        return fail(L, TXT_E_FORMAT,
                    "there is neither a pad nor an eos token to pad with");
    if (!gemma && ((!siglip && t->bos < 0) || t->eos < 0))
        return fail(L, TXT_E_FORMAT, "the %s token is empty",
                    t->eos < 0 ? "eos" : "bos");
    if (siglip && !t->unk_str)
        return fail(L, TXT_E_FORMAT, "SigLIP's tokenizer needs an unk token");
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
        t->byte_id[b] = vocab_get(L, s, n);
        t->byte_eow_id[b] = vocab_get(L, s, n + 4);
    }
}

/* What only SigLIP's tokenizer needs: do_lower_case, and how many pieces
 * the unk token's text alone gives (siglip.c, step 4). */
static txt_status finish_siglip(loader *L, txt_tokenizer *t, json_t *cfg)
{
    t->lower = flag_of(cfg, "do_lower_case", 1);
    txt_spm_scratch sc = {0};
    long k = txt_spm_encode(&t->spm, t->unk_str, t->unk_n, &sc);
    txt_spm_scratch_free(&sc);
    if (k < 0)
        return fail(L, TXT_E_NOMEM, "out of memory");
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
        return fail(L, TXT_E_NOMEM, "out of memory");
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
        t->byte_id[b] = vocab_get(L, name, 6);
    }
    t->byte_fallback = 1;
    if (!L->as_is) {
        t->fuse_unk = 1;
        L->model_unk = (const char *)t->unk_str;
        L->model_unk_n = t->unk_n;
    }
    t->bpe_unk = L->model_unk ? vocab_get(L, L->model_unk, L->model_unk_n)
                              : -1;
    return TXT_OK;
}

/* padding_side and truncation_side: the class's defaults (Gemma's class
 * pads on the left), and only right truncation is run. */
static txt_status sides(loader *L, txt_tokenizer *t, json_t *cfg)
{
    json_t *ps = json_object_get(cfg, "padding_side");
    json_t *ts = json_object_get(cfg, "truncation_side");
    t->pad_left = t->kind == TXT_KIND_GEMMA && !L->as_is;
    if (ps && !str_is(ps, "left") && !str_is(ps, "right"))
        return fail(L, TXT_E_FORMAT,
                    "padding_side is neither \"left\" nor \"right\"");
    if (ps)
        t->pad_left = str_is(ps, "left");
    if (ts && !str_is(ts, "right"))
        return fail(L, str_is(ts, "left") ? TXT_E_UNSUPPORTED : TXT_E_FORMAT,
                    "truncation_side is not \"right\"");
    return TXT_OK;
}

static txt_status finish(loader *L, txt_tokenizer *t, json_t *cfg)
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
        return fail(L, TXT_E_NOMEM, "out of memory");
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
                    return fail(L, TXT_E_NOMEM, "out of memory");
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

void txt_tokenizer_free(txt_tokenizer *t)
{
    if (!t)
        return;
    for (int i = 0; i < t->n_added; i++)
        free(t->added[i].s);
    free(t->added);
    free(t->merges);
    pcre2_code_free(t->re);
    txt_cache_free(t);
    txt_spm_free(&t->spm);
    free(t->unk_str);
    free(t->chars);
    free(t);
}

txt_status txt_tokenizer_load(const char *dir, txt_tokenizer **out,
                              char *err, size_t errlen)
{
    if (!dir || !out)
        return txt_fail(err, errlen, TXT_E_ARG,
                        "txt_tokenizer_load: NULL directory or out pointer");
    loader L = {.err = err, .errlen = errlen, .max_id = -1};
    json_t *cfg = NULL, *root = NULL, *smap = NULL;
    txt_status st = TXT_OK;
    txt_tokenizer *t = calloc(1, sizeof *t);
    if (!t)
        return txt_fail(err, errlen, TXT_E_NOMEM, "out of memory");
    t->bos = t->eos = t->pad = t->unk = -1;

    if (file_exists(dir, "tokenizer_config.json")) {
        /* Reals, because transformers writes "no limit" as 1e30 in
         * integer form, which jansson's integers cannot hold. */
        if ((st = json_open(&L, dir, "tokenizer_config.json",
                            JSON_DECODE_INT_AS_REAL, &cfg)))
            goto done;
        if (!json_is_object(cfg)) {
            st = fail(&L, TXT_E_FORMAT, "not a JSON object");
            goto done;
        }
    }
    json_t *atd = json_object_get(cfg, "added_tokens_decoder");
    int has_json = file_exists(dir, "tokenizer.json");
    /* SiglipTokenizer reads spiece.model whatever else is there; a
     * directory with no tokenizer_class and nothing but spiece.model is
     * taken to be SigLIP's too. */
    json_t *cls = json_object_get(cfg, "tokenizer_class");
    int has_vm = file_exists(dir, "vocab.json") &&
                 file_exists(dir, "merges.txt");
    /* Gemma's tokenizer (SigLIP 2's) is tokenizer.json, named by its class
     * or, with no class, known by its byte-fallback BPE model. */
    int gemma_cls = class_is(cls, "GemmaTokenizer") ||
                    class_is(cls, "Siglip2Tokenizer");
    if (str_is(cls, "SiglipTokenizer") ||
        (!cls && !has_json && !has_vm && file_exists(dir, "spiece.model"))) {
        t->kind = TXT_KIND_SIGLIP;
        st = load_spiece(&L, t, dir);
    } else if (gemma_cls && !has_json)
        st = txt_fail(err, errlen, TXT_E_NOTFOUND,
                      "%s: no tokenizer.json, which %s reads", dir,
                      json_string_value(cls));
    else if (has_json) {
        if (!(st = json_open(&L, dir, "tokenizer.json", 0, &root))) {
            json_t *m = json_object_get(root, "model");
            json_t *mt = json_object_get(m, "type");
            int gemma = gemma_cls ? 1
                        : !cls && (!mt || str_is(mt, "BPE")) &&
                                  flag_of(m, "byte_fallback", 0)
                            ? 2
                            : 0;
            if (gemma) {
                t->kind = TXT_KIND_GEMMA;
                t->lower = class_is(cls, "Siglip2Tokenizer");
                L.gemma = 1;
                L.as_is = gemma == 2;
            }
            st = load_tokenizer_json(&L, t, root, !atd, gemma);
        }
    } else if (has_vm)
        st = load_vocab_merges(&L, t, dir, &root);
    else
        st = txt_fail(err, errlen, TXT_E_NOTFOUND,
                      "%s: no tokenizer.json, nor vocab.json and merges.txt, "
                      "nor spiece.model",
                      dir);
    if (st)
        goto done;
    snprintf(L.path, sizeof L.path, "%s/tokenizer_config.json", dir);
    if ((st = sides(&L, t, cfg)))
        goto done;

    /* tokenizer_config.json's added_tokens_decoder, when present, is what
     * transformers registers (with its "normalized" flags), and then
     * tokenizer.json's added_tokens are not read. Without it, the legacy
     * special_tokens_map.json overrides the config's special tokens. */
    if (atd) {
        snprintf(L.path, sizeof L.path, "%s/tokenizer_config.json", dir);
        if (!json_is_object(atd)) {
            st = fail(&L, TXT_E_FORMAT, "added_tokens_decoder is not an "
                      "object");
            goto done;
        }
        const char *key;
        json_t *v;
        json_object_foreach(atd, key, v)
        {
            char *end;
            errno = 0;
            long id = strtol(key, &end, 10);
            if (*key == '\0' || *end || errno || id < 0 || id >= INT32_MAX) {
                st = fail(&L, TXT_E_FORMAT, "added_tokens_decoder key \"%.20s\" "
                          "is not an id", key);
                goto done;
            }
            if ((st = added_from_json(&L, v, (int32_t)id)))
                goto done;
        }
    }
    if (!atd && file_exists(dir, "special_tokens_map.json")) {
        if ((st = json_open(&L, dir, "special_tokens_map.json", 0, &smap)))
            goto done;
        if (!json_is_object(smap)) {
            st = fail(&L, TXT_E_FORMAT, "not a JSON object");
            goto done;
        }
    }
    snprintf(L.path, sizeof L.path, "%s/%s", dir,
             smap ? "special_tokens_map.json"
                  : cfg ? "tokenizer_config.json"
                        : t->kind == TXT_KIND_SIGLIP
                              ? "spiece.model"
                              : has_json ? "tokenizer.json" : "vocab.json");
    if ((st = specials(&L, t, cfg, smap)))
        goto done;
    st = finish(&L, t, cfg);

done:
    for (int i = 0; i < L.n_added; i++)
        free(L.added[i].s);
    free(L.added);
    free(L.map);
    txt_norm_scratch_free(&L.nsc);
    json_decref(root);
    json_decref(cfg);
    json_decref(smap);
    if (st) {
        txt_tokenizer_free(t);
        return st;
    }
    *out = t;
    return TXT_OK;
}

int32_t txt_bos_id(const txt_tokenizer *t) { return t ? t->bos : -1; }
int32_t txt_eos_id(const txt_tokenizer *t) { return t ? t->eos : -1; }
int32_t txt_pad_id(const txt_tokenizer *t) { return t ? t->pad : -1; }
int txt_vocab_size(const txt_tokenizer *t) { return t ? t->vocab_size : 0; }
int txt_max_length(const txt_tokenizer *t) { return t ? t->max_length : 0; }
txt_kind txt_kind_of(const txt_tokenizer *t)
{
    return t ? t->kind : TXT_KIND_CLIP;
}
int txt_pads_left(const txt_tokenizer *t) { return t ? t->pad_left : 0; }
