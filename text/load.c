/*
 * Loading a tokenizer from a Hugging Face model directory: for CLIP the
 * vocabulary and merges from tokenizer.json (checked to be CLIP's kind) or
 * from vocab.json + merges.txt, for SigLIP the SentencePiece model
 * spiece.model (read by spm.c, its pieces then being the vocabulary); the
 * special and added tokens and model_max_length from tokenizer_config.json,
 * with each class's defaults (specials.c, with the derived tables the
 * encoder needs: CLIP's symbol of each byte, split regex and word cache;
 * the merge table is built here). CLIP's string-to-id map lives only
 * while loading: encoding works on ids alone. The status messages live
 * here too.
 */
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "text/loader.h"

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

/* The Split regexes a CLIP tokenizer.json may hold: transformers' current
 * one, and the older one without the special tokens. Either way the
 * reference (transformers 5) splits with the current one. */
static const char *const clip_regex[] = {
    "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|"
    "[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+",
    "'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+",
};

/* ---- the vocabulary while loading ---- */


static uint64_t str_hash(const char *s, size_t n)
{
    uint64_t h = TXT_FNV_INIT;
    for (size_t i = 0; i < n; i++)
        h = txt_fnv_step(h, (uint8_t)s[i]);
    return h;
}

int32_t txt__vocab_get(const loader *L, const char *s, size_t n)
{
    if (L->spm)
        return txt_spm_piece_id(L->spm, (const uint8_t *)s, n);
    for (size_t i = str_hash(s, n) & L->mask; L->map[i].s;
         i = (i + 1) & L->mask)
        if (L->map[i].n == n && !memcmp(L->map[i].s, s, n))
            return L->map[i].id;
    return -1;
}

txt_status txt__lfail(loader *L, txt_status st, const char *fmt, ...)
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
        return txt__lfail(L, TXT_E_FORMAT, "the vocabulary is not a JSON object");
    size_t n = json_object_size(vocab), slots = 16;
    if (n == 0)
        return txt__lfail(L, TXT_E_FORMAT, "the vocabulary is empty");
    while (slots < 2 * n)
        slots *= 2;
    L->map = calloc(slots, sizeof *L->map);
    if (!L->map)
        return txt__lfail(L, TXT_E_NOMEM, "no memory for the vocabulary");
    L->mask = slots - 1;
    const char *key;
    size_t klen;
    json_t *v;
    json_object_keylen_foreach(vocab, key, klen, v)
    {
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) >= INT32_MAX)
            return txt__lfail(L, TXT_E_FORMAT,
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
    int32_t ia = txt__vocab_get(L, a, an), ib = txt__vocab_get(L, b, bn);
    if (ia < 0 || ib < 0)
        return txt__lfail(L, TXT_E_FORMAT,
                    "merge %u (\"%.*s %.*s\"): \"%.*s\" is not in the "
                    "vocabulary",
                    rank + 1, (int)an, a, (int)bn, b,
                    (int)(ia < 0 ? an : bn), ia < 0 ? a : b);
    char buf[256];
    char *cat = an + bn <= sizeof buf ? buf : malloc(an + bn);
    if (!cat)
        return txt__lfail(L, TXT_E_NOMEM, "out of memory");
    memcpy(cat, a, an);
    memcpy(cat + an, b, bn);
    int32_t id = txt__vocab_get(L, cat, an + bn);
    if (cat != buf)
        free(cat);
    if (id < 0)
        return txt__lfail(L, TXT_E_FORMAT,
                    "merge %u (\"%.*s %.*s\"): the merged token is not in "
                    "the vocabulary",
                    rank + 1, (int)an, a, (int)bn, b);
    txt_merges_put(t, ia, ib, rank, id);
    return TXT_OK;
}

/* ---- added tokens ---- */

/* Adds (or, for a content already there, updates) an added token. */
txt_status txt__added_put(loader *L, const char *s, size_t n, int32_t id,
                          int normalized, int special)
{
    if (n == 0)
        return txt__lfail(L, TXT_E_FORMAT, "an added token is empty");
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
            return txt__lfail(L, TXT_E_NOMEM, "out of memory");
        L->added = p;
        L->cap_added = cap;
    }
    uint8_t *c = malloc(n);
    if (!c)
        return txt__lfail(L, TXT_E_NOMEM, "out of memory");
    memcpy(c, s, n);
    L->added[L->n_added++] = (txt_added){c, n, id, normalized, special};
    if (id > L->max_id)
        L->max_id = id;
    return TXT_OK;
}

int txt__flag_of(json_t *o, const char *k, int dflt)
{
    json_t *v = json_object_get(o, k);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

/* One AddedToken object ({"content": ..., "normalized": ..., ...}). */
static txt_status added_from_json(loader *L, json_t *o, int32_t id)
{
    json_t *c = json_object_get(o, "content");
    if (!json_is_string(c))
        return txt__lfail(L, TXT_E_FORMAT, "added token %d has no content", id);
    /* SigLIP's lstrip and rstrip strip what its canonicalization strips
     * anyway (siglip.c); CLIP's and Gemma's tokens have neither. */
    if ((!L->spm && (txt__flag_of(o, "lstrip", 0) || txt__flag_of(o, "rstrip", 0))) ||
        txt__flag_of(o, "single_word", 0))
        return txt__lfail(L, TXT_E_UNSUPPORTED,
                    "added token \"%.40s\" uses %s, which %s's do not",
                    json_string_value(c),
                    L->spm ? "single_word" : "lstrip, rstrip or single_word",
                    L->spm ? "SigLIP" : L->gemma ? "Gemma" : "CLIP");
    /* tokenizers' default: special tokens are matched on the raw text.
     * Its add_tokens takes the vocabulary's id when there is one. */
    int normalized = txt__flag_of(o, "normalized", !txt__flag_of(o, "special", 0));
    int32_t vid = txt__vocab_get(L, json_string_value(c), json_string_length(c));
    return txt__added_put(L, json_string_value(c), json_string_length(c),
                     vid >= 0 ? vid : id, normalized, txt__flag_of(o, "special", 0));
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
            return txt__lfail(L, TXT_E_IO, "%s", strerror(errno));
        fclose(f);
        return txt__lfail(L, TXT_E_FORMAT, "line %d: %s", je.line, je.text);
    }
    return TXT_OK;
}

static int type_is(json_t *o, const char *type)
{
    json_t *t = json_object_get(o, "type");
    return json_is_string(t) && !strcmp(json_string_value(t), type);
}

int txt__str_is(json_t *v, const char *s)
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
        !txt__str_is(json_object_get(json_object_get(rp, "pattern"), "Regex"),
                "\\s+") ||
        !txt__str_is(json_object_get(rp, "content"), " ") ||
        !type_is(json_array_get(ns, 2), "Lowercase"))
        return txt__lfail(L, TXT_E_UNSUPPORTED,
                    "the normalizer is not CLIP's (NFC, whitespace runs to "
                    "one space, lowercase)");

    json_t *pt = json_object_get(root, "pre_tokenizer");
    json_t *ps = json_object_get(pt, "pretokenizers");
    json_t *sp = json_array_get(ps, 0), *bl = json_array_get(ps, 1);
    json_t *re = json_object_get(json_object_get(sp, "pattern"), "Regex");
    int known = 0;
    for (size_t i = 0; i < sizeof clip_regex / sizeof clip_regex[0]; i++)
        known |= txt__str_is(re, clip_regex[i]);
    if (!type_is(pt, "Sequence") || json_array_size(ps) != 2 ||
        !type_is(sp, "Split") || !known ||
        !txt__str_is(json_object_get(sp, "behavior"), "Removed") ||
        !txt__flag_of(sp, "invert", 0) || !type_is(bl, "ByteLevel") ||
        txt__flag_of(bl, "add_prefix_space", 1))
        return txt__lfail(L, TXT_E_UNSUPPORTED,
                    "the pre-tokenizer is not CLIP's (the CLIP split regex, "
                    "then ByteLevel without a prefix space)");

    json_t *m = json_object_get(root, "model");
    json_t *mt = json_object_get(m, "type");
    if (!json_is_object(m) || (mt && !txt__str_is(mt, "BPE")))
        return txt__lfail(L, TXT_E_UNSUPPORTED, "the model is not BPE");
    if (!txt__str_is(json_object_get(m, "end_of_word_suffix"), "</w>"))
        return txt__lfail(L, TXT_E_UNSUPPORTED,
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
        !txt__str_is(json_object_get(json_object_get(rp, "pattern"), "String"),
                " ") ||
        !txt__str_is(json_object_get(rp, "content"), "\xE2\x96\x81"))
        return txt__lfail(L, TXT_E_UNSUPPORTED,
                    "the normalizer is not Gemma's (spaces to \"\xE2\x96\x81\", "
                    "after a Lowercase or not)");
    json_t *pt = json_object_get(root, "pre_tokenizer");
    if (pt && !json_is_null(pt) &&
        !(type_is(pt, "Split") &&
          txt__str_is(json_object_get(json_object_get(pt, "pattern"), "String"),
                 " ") &&
          txt__str_is(json_object_get(pt, "behavior"), "MergedWithPrevious") &&
          !txt__flag_of(pt, "invert", 0)))
        return txt__lfail(L, TXT_E_UNSUPPORTED,
                    "the pre-tokenizer is not Gemma's (none, or a split "
                    "at spaces)");
    json_t *m = json_object_get(root, "model");
    json_t *dr = json_object_get(m, "dropout");
    json_t *pre = json_object_get(m, "continuing_subword_prefix");
    json_t *suf = json_object_get(m, "end_of_word_suffix");
    if ((dr && !json_is_null(dr)) || (pre && !json_is_null(pre)) ||
        (suf && !json_is_null(suf)) || txt__flag_of(m, "ignore_merges", 0))
        return txt__lfail(L, TXT_E_UNSUPPORTED,
                    "the BPE model uses dropout, a subword prefix or "
                    "suffix, or ignore_merges, which Gemma's does not");
    t->fuse_unk = txt__flag_of(m, "fuse_unk", 0);
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
        return txt__lfail(L, TXT_E_UNSUPPORTED,
                    "the post-processor is not a TemplateProcessing");
    int seen_a = 0;
    size_t i;
    json_t *item;
    json_array_foreach(single, i, item)
    {
        json_t *seq = json_object_get(item, "Sequence");
        json_t *tok = json_object_get(item, "SpecialToken");
        if (seq) {
            if (seen_a++ || !txt__str_is(json_object_get(seq, "id"), "A"))
                return txt__lfail(L, TXT_E_UNSUPPORTED,
                            "the post-processor's template is not special "
                            "tokens around one $A");
            continue;
        }
        const char *name = json_string_value(json_object_get(tok, "id"));
        json_t *ids = json_object_get(json_object_get(sp, name ? name : ""),
                                      "ids");
        if (!json_is_array(ids))
            return txt__lfail(L, TXT_E_FORMAT,
                        "the post-processor's template names a special "
                        "token it does not define");
        size_t j;
        json_t *v;
        json_array_foreach(ids, j, v)
        {
            int *n = seen_a ? &t->n_suffix : &t->n_prefix;
            if (!json_is_integer(v) || json_integer_value(v) < 0 ||
                json_integer_value(v) >= INT32_MAX || *n == TXT_MAX_FRAME)
                return txt__lfail(L, TXT_E_FORMAT,
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
        return txt__lfail(L, TXT_E_UNSUPPORTED,
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
            return txt__lfail(L, TXT_E_UNSUPPORTED,
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
        return txt__lfail(L, TXT_E_FORMAT, "model.merges is not an array");
    if (txt_merges_alloc(t, json_array_size(merges)))
        return txt__lfail(L, TXT_E_NOMEM, "no memory for the merges");
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
                return txt__lfail(L, TXT_E_FORMAT,
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
            return txt__lfail(L, TXT_E_FORMAT,
                        "merge %zu is neither \"a b\" nor [\"a\", \"b\"]",
                        i + 1);
        if ((st = merge_add(L, t, (uint32_t)i, a, an, b, bn)))
            return st;
    }
    json_t *added = json_object_get(root, "added_tokens");
    if (added && !json_is_array(added))
        return txt__lfail(L, TXT_E_FORMAT, "added_tokens is not an array");
    if (!use_added)
        return TXT_OK;
    json_array_foreach(added, i, m)
    {
        json_t *id = json_object_get(m, "id");
        if (!json_is_integer(id) || json_integer_value(id) < 0 ||
            json_integer_value(id) >= INT32_MAX)
            return txt__lfail(L, TXT_E_FORMAT, "added token %zu has no valid id",
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
        return txt__lfail(L, TXT_E_IO, "%s", strerror(errno));
    size_t got = 0;
    do {
        if (txt_buf_reserve(b, 65536)) {
            fclose(f);
            return txt__lfail(L, TXT_E_NOMEM, "out of memory");
        }
        got = fread(b->p + b->n, 1, 65536, f);
        b->n += got;
    } while (got > 0);
    int ioerr = ferror(f);
    fclose(f);
    return ioerr ? txt__lfail(L, TXT_E_IO, "read error") : TXT_OK;
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
        return txt__lfail(L, TXT_E_NOMEM, "no memory for the merges");
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
            st = txt__lfail(L, TXT_E_FORMAT,
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
            st = txt__lfail(&L, TXT_E_FORMAT, "not a JSON object");
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
    if (txt__str_is(cls, "SiglipTokenizer") ||
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
                        : !cls && (!mt || txt__str_is(mt, "BPE")) &&
                                  txt__flag_of(m, "byte_fallback", 0)
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
    if ((st = txt__sides(&L, t, cfg)))
        goto done;

    /* tokenizer_config.json's added_tokens_decoder, when present, is what
     * transformers registers (with its "normalized" flags), and then
     * tokenizer.json's added_tokens are not read. Without it, the legacy
     * special_tokens_map.json overrides the config's special tokens. */
    if (atd) {
        snprintf(L.path, sizeof L.path, "%s/tokenizer_config.json", dir);
        if (!json_is_object(atd)) {
            st = txt__lfail(&L, TXT_E_FORMAT, "added_tokens_decoder is not an "
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
                st = txt__lfail(&L, TXT_E_FORMAT, "added_tokens_decoder key \"%.20s\" "
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
            st = txt__lfail(&L, TXT_E_FORMAT, "not a JSON object");
            goto done;
        }
    }
    snprintf(L.path, sizeof L.path, "%s/%s", dir,
             smap ? "special_tokens_map.json"
                  : cfg ? "tokenizer_config.json"
                        : t->kind == TXT_KIND_SIGLIP
                              ? "spiece.model"
                              : has_json ? "tokenizer.json" : "vocab.json");
    if ((st = txt__specials(&L, t, cfg, smap)))
        goto done;
    st = txt__finish(&L, t, cfg);

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
