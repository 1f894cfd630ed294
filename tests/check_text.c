/*
 * The tokenizer against the reference: every string of
 * tests/fixtures/text/cases.json (made by CLIPTokenizerFast, see
 * tests/gen_fixtures_text.py) must give exactly the reference's ids, both
 * truncated to 77 and untruncated, from both loading paths (vocab.json +
 * merges.txt, and tokenizer.json); every code point, through blocks.json;
 * truncation at small lengths; a 1 MB input. The same for SigLIP's
 * tokenizer (siglip.json, made by SiglipTokenizer) and for Gemma's, SigLIP
 * 2's (gemma.json, made by GemmaTokenizer, Siglip2Tokenizer and
 * TokenizersBackend), padded to 64 as their processors pad. Then the edges
 * of the API and loading: malformed files give the right status and a
 * message naming the file, and several threads share one tokenizer.
 */
#include <check.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "text/text.h"

#define TFX FIXTURES "/text"
#define BIG (1 << 20)

/* ---- helpers ---- */

static json_t *cases_json(void)
{
    static json_t *root;
    if (!root) {
        json_error_t je;
        root = json_load_file(TFX "/cases.json", 0, &je);
        ck_assert_msg(root, "cases.json: %s", je.text);
    }
    return root;
}

static txt_tokenizer *load(const char *dir)
{
    char err[512] = "";
    txt_tokenizer *t = NULL;
    txt_status st = txt_tokenizer_load(dir, &t, err, sizeof err);
    ck_assert_msg(st == TXT_OK, "%s: %s", txt_status_str(st), err);
    return t;
}

/* Decodes a hex string; *n gets the byte count. */
static unsigned char *unhex(const char *h, size_t *n)
{
    size_t len = strlen(h) / 2;
    unsigned char *b = malloc(len + 1);
    for (size_t i = 0; i < len; i++) {
        unsigned v;
        sscanf(h + 2 * i, "%2x", &v);
        b[i] = (unsigned char)v;
    }
    *n = len;
    return b;
}

static void print_input(const unsigned char *s, size_t n)
{
    printf("  input (%zu bytes): \"", n);
    for (size_t i = 0; i < n && i < 300; i++) {
        if (s[i] >= 0x20 && s[i] < 0x7F && s[i] != '"' && s[i] != '\\')
            putchar(s[i]);
        else
            printf("\\x%02x", s[i]);
    }
    printf(n > 300 ? "\"...\n" : "\"\n");
}

static void print_ids(const char *what, const int32_t *ids, int n)
{
    printf("  %s (%d):", what, n);
    for (int i = 0; i < n && i < 120; i++)
        printf(" %d", ids[i]);
    printf(n > 120 ? " ...\n" : "\n");
}

/* Compares ids with a JSON array; on a mismatch prints both. */
static int same_ids(const int32_t *ids, int n, json_t *ref)
{
    if ((size_t)n != json_array_size(ref))
        return 0;
    for (int i = 0; i < n; i++)
        if (ids[i] != json_integer_value(json_array_get(ref, (size_t)i)))
            return 0;
    return 1;
}

static void print_ref(json_t *ref)
{
    int n = (int)json_array_size(ref);
    int32_t *r = malloc(((size_t)n + 1) * sizeof *r);
    for (int i = 0; i < n; i++)
        r[i] = (int32_t)json_integer_value(json_array_get(ref, (size_t)i));
    print_ids("reference", r, n);
    free(r);
}

static uint64_t fnv_ids(const int32_t *ids, int n)
{
    uint64_t h = 0xCBF29CE484222325ULL;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < 4; k++)
            h = (h ^ (((uint32_t)ids[i] >> (8 * k)) & 0xFF)) *
                0x100000001B3ULL;
    return h;
}

/* The vocabulary size and special ids are those `ref` records
 * ("vocab_size", "bos", "eos", "pad"; null for none, a key it lacks is
 * not checked). */
static void same_specials(const txt_tokenizer *t, json_t *ref)
{
    static const char *const keys[] = {"vocab_size", "bos", "eos", "pad"};
    int got[] = {txt_vocab_size(t), txt_bos_id(t), txt_eos_id(t),
                 txt_pad_id(t)};
    for (int k = 0; k < 4; k++) {
        json_t *v = json_object_get(ref, keys[k]);
        if (v)
            ck_assert_msg(got[k] == (json_is_null(v)
                                         ? -1
                                         : json_integer_value(v)),
                          "%s: %d, the reference's %lld", keys[k], got[k],
                          json_is_null(v) ? -1LL
                                          : (long long)json_integer_value(v));
    }
}

/* ---- the reference cases ---- */

/* Runs every case of `root` (cases.json or siglip.json) through the
 * tokenizer of `dir`, truncated to max_length (and padded to it with
 * `padded`, as siglip.json holds them) and untruncated; returns the number
 * of strings that did not match. */
static int run_cases(const char *dir, json_t *root, int padded)
{
    txt_tokenizer *t = load(dir);
    json_t *cases = json_object_get(root, "cases");
    int max_len = (int)json_integer_value(json_object_get(root, "max_length"));
    int32_t *ids = malloc(BIG * sizeof *ids);
    size_t i, total = json_array_size(cases);
    int bad = 0;
    json_t *c;
    json_array_foreach(cases, i, c)
    {
        size_t n;
        unsigned char *s = unhex(json_string_value(json_array_get(c, 0)), &n);
        json_t *r77 = json_array_get(c, 1), *rfull = json_array_get(c, 2);
        if (json_is_null(rfull))
            rfull = r77;
        int k = padded ? txt_encode_padded(t, (const char *)s, n, ids, max_len)
                       : txt_encode(t, (const char *)s, n, ids, max_len);
        int ok = padded ? k >= 1 && same_ids(ids, max_len, r77)
                        : same_ids(ids, k, r77);
        if (!ok && bad < 20) {
            printf("%s: case %zu differs (%s %d)\n", dir, i,
                   padded ? "padded to" : "max_length", max_len);
            print_input(s, n);
            print_ids("ours", ids, padded ? max_len : k);
            print_ref(r77);
        }
        int k2 = txt_encode(t, (const char *)s, n, ids, BIG);
        int ok2 = same_ids(ids, k2, rfull);
        if (!ok2 && ok && bad < 20) {
            printf("%s: case %zu differs (untruncated)\n", dir, i);
            print_input(s, n);
            print_ids("ours", ids, k2);
            print_ref(rfull);
        }
        bad += !(ok && ok2);
        free(s);
    }
    printf("text: %s: %zu of %zu strings give the reference's ids "
           "(%s %d and untruncated)\n",
           dir, total - (size_t)bad, total,
           padded ? "padded to" : "truncated to", max_len);
    fflush(stdout);
    free(ids);
    txt_tokenizer_free(t);
    return bad;
}

START_TEST(reference_vocab_merges)
{
    ck_assert_int_eq(run_cases(TFX "/bpe", cases_json(), 0), 0);
}
END_TEST

START_TEST(reference_tokenizer_json)
{
    ck_assert_int_eq(run_cases(TFX "/json", cases_json(), 0), 0);
}
END_TEST

/* The "trunc" cases of `root` through the tokenizer of `dir`: each at its
 * own max_length, padded to it with `padded`. Returns how many differ. */
static int run_trunc(const char *dir, json_t *root, int padded)
{
    txt_tokenizer *t = load(dir);
    json_t *tr = json_object_get(root, "trunc");
    int32_t ids[BIG / 64];
    size_t i;
    json_t *c;
    int bad = 0;
    json_array_foreach(tr, i, c)
    {
        size_t n;
        unsigned char *s = unhex(json_string_value(json_array_get(c, 0)), &n);
        int ml = (int)json_integer_value(json_array_get(c, 1));
        json_t *ref = json_array_get(c, 2);
        int k = padded ? txt_encode_padded(t, (const char *)s, n, ids, ml)
                       : txt_encode(t, (const char *)s, n, ids, ml);
        /* Below 2, CLIP's reference does not truncate: we write what
         * fits. */
        int want = padded || ml >= 2 ? (int)json_array_size(ref) : ml;
        int ok = k >= 0 && (padded ? k >= 1 : k == want);
        for (int j = 0; ok && j < want; j++)
            ok = ids[j] == json_integer_value(json_array_get(ref, (size_t)j));
        if (!ok) {
            printf("%s: truncation case %zu, max_length %d differs\n", dir,
                   i, ml);
            print_input(s, n);
            print_ids("ours", ids, padded ? ml : k);
            print_ref(ref);
            bad++;
        }
        free(s);
    }
    printf("text: %s: %zu of %zu truncation cases match\n", dir,
           json_array_size(tr) - (size_t)bad, json_array_size(tr));
    fflush(stdout);
    txt_tokenizer_free(t);
    return bad;
}

/* HF's truncation at small max_length. */
START_TEST(reference_truncation)
{
    ck_assert_int_eq(run_trunc(TFX "/bpe", cases_json(), 0), 0);
}
END_TEST

/* The older tokenizer.json form ("a b" merges) and a laion-style
 * tokenizer_config.json (pad_token "!", no model_max_length). */
START_TEST(reference_tiny)
{
    txt_tokenizer *t = load(TFX "/tiny");
    json_t *tiny = json_object_get(cases_json(), "tiny");
    int32_t *ids = malloc(BIG * sizeof *ids);
    size_t i;
    json_t *c;
    int bad = 0;
    json_array_foreach(tiny, i, c)
    {
        size_t n;
        unsigned char *s = unhex(json_string_value(json_array_get(c, 0)), &n);
        int k = txt_encode(t, (const char *)s, n, ids, BIG);
        if (!same_ids(ids, k, json_array_get(c, 1))) {
            printf("tiny case %zu differs\n", i);
            print_input(s, n);
            print_ids("ours", ids, k);
            print_ref(json_array_get(c, 1));
            bad++;
        }
        free(s);
    }
    printf("text: tiny: %zu of %zu strings match\n",
           json_array_size(tiny) - (size_t)bad, json_array_size(tiny));
    fflush(stdout);
    ck_assert_int_eq(bad, 0);
    ck_assert_int_eq(txt_pad_id(t), 0); /* "!" */
    ck_assert_int_eq(txt_max_length(t), 0);
    free(ids);
    txt_tokenizer_free(t);
}
END_TEST

/* Special tokens as older configurations give them: AddedToken objects
 * with their own "normalized" flags, tokens missing from the vocabulary
 * (new ids), a legacy special_tokens_map.json. */
START_TEST(reference_special_tokens)
{
    const char *names[] = {"specials", "legacy"};
    int32_t ids[256];
    for (int d = 0; d < 2; d++) {
        char dir_[256];
        snprintf(dir_, sizeof dir_, TFX "/%s", names[d]);
        txt_tokenizer *t = load(dir_);
        json_t *sp = json_object_get(json_object_get(cases_json(),
                                                     "specials"), names[d]);
        same_specials(t, sp);
        ck_assert_int_eq(txt_max_length(t),
                         json_integer_value(json_object_get(sp, "max_length")));
        size_t i;
        json_t *c;
        int bad = 0;
        json_array_foreach(json_object_get(sp, "cases"), i, c)
        {
            size_t n;
            unsigned char *s =
                unhex(json_string_value(json_array_get(c, 0)), &n);
            int k = txt_encode(t, (const char *)s, n, ids, 256);
            if (!same_ids(ids, k, json_array_get(c, 1))) {
                printf("%s case %zu differs\n", names[d], i);
                print_input(s, n);
                print_ids("ours", ids, k);
                print_ref(json_array_get(c, 1));
                bad++;
            }
            free(s);
        }
        printf("text: %s: %zu of %zu strings match\n", names[d],
               json_array_size(json_object_get(sp, "cases")) - (size_t)bad,
               json_array_size(json_object_get(sp, "cases")));
        fflush(stdout);
        ck_assert_int_eq(bad, 0);
        txt_tokenizer_free(t);
    }
}
END_TEST

/* Block b's string of gen_fixtures_text.py: `pat` for each code point of
 * the block but the surrogates, '@' standing for the code point. */
static size_t block_string(char *s, size_t b, const char *pat)
{
    size_t n = 0;
    for (uint32_t c = (uint32_t)b * 256; c < (uint32_t)b * 256 + 256; c++) {
        if (c >= 0xD800 && c < 0xE000)
            continue;
        char u[4];
        int k;
        if (c < 0x80)
            u[0] = (char)c, k = 1;
        else if (c < 0x800)
            u[0] = (char)(0xC0 | c >> 6), u[1] = (char)(0x80 | (c & 63)),
            k = 2;
        else if (c < 0x10000)
            u[0] = (char)(0xE0 | c >> 12),
            u[1] = (char)(0x80 | (c >> 6 & 63)),
            u[2] = (char)(0x80 | (c & 63)), k = 3;
        else
            u[0] = (char)(0xF0 | c >> 18),
            u[1] = (char)(0x80 | (c >> 12 & 63)),
            u[2] = (char)(0x80 | (c >> 6 & 63)),
            u[3] = (char)(0x80 | (c & 63)), k = 4;
        for (const char *p = pat; *p; p++) {
            if (*p == '@') {
                memcpy(s + n, u, (size_t)k);
                n += (size_t)k;
            } else
                s[n++] = *p;
        }
    }
    return n;
}

/* Every code point, 256 at a time, through the tokenizer of `dir`:
 * `blocks` holds [count, FNV-1a] of the reference's untruncated ids of
 * each block's string. Returns the number of blocks that differ. */
static int run_blocks(const char *dir, json_t *blocks, const char *pat)
{
    txt_tokenizer *t = load(dir);
    int32_t *ids = malloc(BIG * sizeof *ids);
    char *s = malloc(256 * 64);
    int bad = 0;
    size_t nb = json_array_size(blocks);
    for (size_t b = 0; b < nb; b++) {
        size_t n = block_string(s, b, pat);
        int k = txt_encode(t, s, n, ids, BIG);
        json_t *e = json_array_get(blocks, b);
        char hex[17];
        snprintf(hex, sizeof hex, "%016llx",
                 (unsigned long long)fnv_ids(ids, k));
        if (k != json_integer_value(json_array_get(e, 0)) ||
            strcmp(hex, json_string_value(json_array_get(e, 1)))) {
            if (bad < 10)
                printf("%s: code points U+%04zX..U+%04zX: %d ids, hash %s; "
                       "the reference has %lld ids, hash %s\n",
                       dir, b * 256, b * 256 + 255, k, hex,
                       (long long)json_integer_value(json_array_get(e, 0)),
                       json_string_value(json_array_get(e, 1)));
            bad++;
        }
    }
    printf("text: %s: %zu of %zu blocks of 256 code points match\n", dir,
           nb - (size_t)bad, nb);
    fflush(stdout);
    free(s);
    free(ids);
    txt_tokenizer_free(t);
    return bad;
}

START_TEST(reference_every_code_point)
{
    json_error_t je;
    json_t *blocks = json_load_file(TFX "/blocks.json", 0, &je);
    ck_assert_msg(blocks, "blocks.json: %s", je.text);
    /* "a{c}{c}!{c}1{c}\uac00{c}\u0301 " */
    ck_assert_int_eq(
        run_blocks(TFX "/bpe", blocks, "a@@!@1@\xea\xb0\x80@\xcc\x81 "), 0);
    json_decref(blocks);
}
END_TEST

/* The 1 MB input of a "long" entry: its unit repeated to its byte count. */
static char *long_input(json_t *lc, size_t *n)
{
    size_t un;
    *n = (size_t)json_integer_value(json_object_get(lc, "bytes"));
    unsigned char *unit =
        unhex(json_string_value(json_object_get(lc, "unit_hex")), &un);
    char *s = malloc(*n);
    for (size_t i = 0; i < *n; i++)
        s[i] = (char)unit[i % un];
    free(unit);
    return s;
}

/* The whole of it against the entry's count and FNV-1a of the ids. */
static void check_long_full(txt_tokenizer *t, json_t *lc, const char *s,
                            size_t n, int32_t *ids)
{
    int k = txt_encode(t, s, n, ids, BIG);
    ck_assert_int_eq(k, json_integer_value(json_object_get(lc, "n_full")));
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)fnv_ids(ids, k));
    ck_assert_str_eq(hex, json_string_value(json_object_get(lc, "fnv_full")));
    printf("text: a 1 MB input gives the reference's %d ids\n", k);
    fflush(stdout);
}

/* A 1 MB input: truncated quickly, and whole. */
START_TEST(reference_one_megabyte)
{
    txt_tokenizer *t = load(TFX "/bpe");
    json_t *lc = json_object_get(cases_json(), "long");
    size_t n;
    char *s = long_input(lc, &n);
    int32_t *ids = malloc(BIG * sizeof *ids);
    int k = txt_encode(t, s, n, ids, 77);
    ck_assert(same_ids(ids, k, json_object_get(lc, "ids77")));
    check_long_full(t, lc, s, n, ids);

    /* One 1 MB word, and 1 MB of random bytes: no crash, 77 ids. */
    memset(s, 'x', n);
    ck_assert_int_eq(txt_encode(t, s, n, ids, 77), 77);
    uint32_t r = 12345;
    for (size_t i = 0; i < n; i++)
        s[i] = (char)((r = r * 1103515245 + 12345) >> 16);
    ck_assert_int_eq(txt_encode(t, s, n, ids, 77), 77);
    ck_assert_int_eq(ids[76], 49407);
    free(s);
    free(ids);
    txt_tokenizer_free(t);
}
END_TEST

/* ---- SigLIP (tests/fixtures/text/siglip.json, made by SiglipTokenizer) ---- */

static json_t *siglip_json(void)
{
    static json_t *root;
    if (!root) {
        json_error_t je;
        root = json_load_file(TFX "/siglip.json", 0, &je);
        ck_assert_msg(root, "siglip.json: %s", je.text);
    }
    return root;
}

/* Every case padded to 64 as SigLIP's processor pads, and untruncated. */
START_TEST(siglip_reference)
{
    ck_assert_int_eq(run_cases(TFX "/siglip", siglip_json(), 1), 0);
}
END_TEST

/* Truncation and padding to small lengths. */
START_TEST(siglip_truncation)
{
    ck_assert_int_eq(run_trunc(TFX "/siglip", siglip_json(), 1), 0);
}
END_TEST

/* The "long" entry of `root` through the tokenizer of `dir`: padded to 64,
 * and whole. */
static void padded_one_megabyte(const char *dir, json_t *root)
{
    txt_tokenizer *t = load(dir);
    json_t *lc = json_object_get(root, "long");
    size_t n;
    char *s = long_input(lc, &n);
    int32_t *ids = malloc(BIG * sizeof *ids);
    ck_assert_int_eq(txt_encode_padded(t, s, n, ids, 64), 64);
    ck_assert(same_ids(ids, 64, json_object_get(lc, "ids64")));
    check_long_full(t, lc, s, n, ids);
    free(s);
    free(ids);
    txt_tokenizer_free(t);
}

START_TEST(siglip_one_megabyte)
{
    padded_one_megabyte(TFX "/siglip", siglip_json());
}
END_TEST

/* Every code point through the byte-fallback model, where every
 * character's identity reaches the ids. */
START_TEST(siglip_every_code_point)
{
    /* "a{c}\u03a3 {c}\u03a3 a\u03a3{c}a {c}{c} " */
    ck_assert_int_eq(
        run_blocks(TFX "/siglip_bf",
                   json_object_get(siglip_json(), "bf_blocks"),
                   "a@\xce\xa3 @\xce\xa3 a\xce\xa3@a @@ "),
        0);
}
END_TEST

/* The edges of a tokenizer that puts nothing before the text and `eos`
 * after it, and pads with `pad`: SigLIP's and SigLIP 2's. */
static void eos_after_edges(txt_tokenizer *t, int32_t eos, int32_t pad)
{
    int32_t ids[8] = {-5, -5, -5, -5, -5, -5, -5, -5};
    ck_assert_int_eq(txt_encode(t, "a photo", 7, ids, 0), 0);
    ck_assert_int_eq(ids[0], -5);
    ck_assert_int_eq(txt_encode(t, "a photo", 7, ids, 1), 1);
    ck_assert_int_eq(ids[0], eos);
    ck_assert_int_eq(ids[1], -5);
    ck_assert_int_eq(txt_encode(t, "", 0, ids, 8), 1);
    ck_assert_int_eq(txt_encode(t, NULL, 0, ids, 8), 1);
    ck_assert_int_eq(txt_encode(t, NULL, 3, ids, 8), -1);
    ck_assert_int_eq(txt_encode_padded(t, "", 0, ids, 8), 1);
    ck_assert_int_eq(ids[0], eos);
    for (int k = 1; k < 8; k++)
        ck_assert_int_eq(ids[k], pad);
    ck_assert_int_eq(txt_encode_padded(t, "a", 1, NULL, 4), -1);
}

START_TEST(siglip_api)
{
    const char *dirs[] = {TFX "/siglip", TFX "/siglip_bf"};
    for (int d = 0; d < 2; d++) {
        txt_tokenizer *t = load(dirs[d]);
        ck_assert_int_eq(txt_kind_of(t), TXT_KIND_SIGLIP);
        ck_assert_int_eq(txt_eos_id(t), 1);
        ck_assert_int_eq(txt_pad_id(t), 1);
        ck_assert_int_eq(txt_bos_id(t), -1);
        ck_assert_int_eq(txt_max_length(t), 64);
        if (d == 0)
            ck_assert_int_eq(txt_vocab_size(t),
                             json_integer_value(json_object_get(
                                 siglip_json(), "vocab_size")));
        eos_after_edges(t, 1, 1);
        txt_tokenizer_free(t);
    }
    txt_tokenizer *t = load(TFX "/bpe");
    ck_assert_int_eq(txt_kind_of(t), TXT_KIND_CLIP);
    int32_t ids[8];
    ck_assert_int_eq(txt_encode_padded(t, "a photo", 7, ids, 8), 4);
    ck_assert_int_eq(ids[3], 49407);
    ck_assert_int_eq(ids[7], 49407);
    txt_tokenizer_free(t);
    ck_assert_int_eq(txt_kind_of(NULL), TXT_KIND_CLIP);
}
END_TEST

/* ---- Gemma, SigLIP 2's (tests/fixtures/text/gemma.json, made by
 * GemmaTokenizer, Siglip2Tokenizer and TokenizersBackend) ---- */

static json_t *gemma_json(const char *which)
{
    static json_t *root;
    if (!root) {
        json_error_t je;
        root = json_load_file(TFX "/gemma.json", 0, &je);
        ck_assert_msg(root, "gemma.json: %s", je.text);
    }
    return json_object_get(root, which);
}

/* Every case padded to 64 as SigLIP 2's processor pads, and untruncated:
 * GemmaTokenizer from the hub's layout, Siglip2Tokenizer (lowercase) from
 * transformers 5's. */
START_TEST(gemma_reference)
{
    ck_assert_int_eq(run_cases(TFX "/gemma", gemma_json("gemma"), 1), 0);
    ck_assert_int_eq(run_cases(TFX "/siglip2", gemma_json("siglip2"), 1), 0);
}
END_TEST

START_TEST(gemma_truncation)
{
    ck_assert_int_eq(run_trunc(TFX "/gemma", gemma_json("gemma"), 1), 0);
    ck_assert_int_eq(run_trunc(TFX "/siglip2", gemma_json("siglip2"), 1), 0);
}
END_TEST

/* A 1 MB input is one word for Gemma's BPE: merged whole. */
START_TEST(gemma_one_megabyte)
{
    padded_one_megabyte(TFX "/gemma", gemma_json("gemma"));
}
END_TEST

/* Every code point: in the vocabulary or through byte fallback, and
 * lowercased by Siglip2Tokenizer. */
START_TEST(gemma_every_code_point)
{
    /* "a{c}{c}!{c}1{c}\uac00{c}\u0301 " */
    const char *pat = "a@@!@1@\xea\xb0\x80@\xcc\x81 ";
    ck_assert_int_eq(run_blocks(TFX "/gemma",
                                json_object_get(gemma_json("gemma"),
                                                "blocks"),
                                pat),
                     0);
    ck_assert_int_eq(run_blocks(TFX "/siglip2",
                                json_object_get(gemma_json("siglip2"),
                                                "blocks"),
                                pat),
                     0);
}
END_TEST

/* A tokenizer.json naming no class, run as it is: bos and eos around the
 * text, most byte pieces missing (unknown characters fused and held back
 * as the reference holds them), no truncation below two ids. */
START_TEST(gemma_tiny)
{
    txt_tokenizer *t = load(TFX "/gemma_tiny");
    json_t *tiny = gemma_json("tiny");
    ck_assert_int_eq(txt_kind_of(t), TXT_KIND_GEMMA);
    same_specials(t, tiny);
    ck_assert_int_eq(txt_pad_id(t), -1);
    ck_assert_int_eq(txt_max_length(t),
                     json_integer_value(json_object_get(tiny, "max_length")));
    ck_assert_int_eq(txt_pads_left(t), 0);
    int32_t ids[64];
    size_t i;
    json_t *c;
    int bad = 0, total = 0;
    json_array_foreach(json_object_get(tiny, "cases"), i, c)
    {
        size_t n;
        unsigned char *s = unhex(json_string_value(json_array_get(c, 0)), &n);
        int k = txt_encode(t, (const char *)s, n, ids, 64);
        int ok = same_ids(ids, k, json_array_get(c, 1));
        size_t j;
        json_t *tr;
        json_array_foreach(json_array_get(c, 2), j, tr)
        {
            int ml = (int)json_integer_value(json_array_get(tr, 0));
            json_t *ref = json_array_get(tr, 1);
            /* Below two the reference does not truncate: what fits. */
            int want = (int)json_array_size(ref) < ml
                           ? (int)json_array_size(ref)
                           : ml;
            int kt = txt_encode(t, (const char *)s, n, ids, ml);
            int okt = kt == want;
            for (int q = 0; okt && q < want; q++)
                okt = ids[q] == json_integer_value(
                                    json_array_get(ref, (size_t)q));
            if (!okt)
                printf("gemma_tiny case %zu differs at max_length %d\n", i,
                       ml);
            ok &= okt;
        }
        if (!ok) {
            printf("gemma_tiny case %zu differs\n", i);
            print_input(s, n);
            print_ids("ours", ids, k);
            print_ref(json_array_get(c, 1));
        }
        bad += !ok;
        total++;
        free(s);
    }
    printf("text: gemma_tiny: %d of %d strings match\n", total - bad, total);
    fflush(stdout);
    ck_assert_int_eq(bad, 0);
    /* No pad token: padded with eos. */
    ck_assert_int_eq(txt_encode_padded(t, "ab", 2, ids, 6), 3);
    ck_assert_int_eq(ids[2], 1);
    ck_assert_int_eq(ids[5], 1);
    txt_tokenizer_free(t);
}
END_TEST

START_TEST(gemma_api)
{
    const char *dirs[] = {TFX "/gemma", TFX "/siglip2"};
    const char *names[] = {"gemma", "siglip2"};
    for (int d = 0; d < 2; d++) {
        txt_tokenizer *t = load(dirs[d]);
        json_t *g = gemma_json(names[d]);
        ck_assert_int_eq(txt_kind_of(t), TXT_KIND_GEMMA);
        same_specials(t, g);
        ck_assert_int_eq(txt_max_length(t), 0);
        ck_assert_int_eq(txt_pads_left(t), 0);
        eos_after_edges(t, 1, 0);
        txt_tokenizer_free(t);
    }
    ck_assert_int_eq(txt_pads_left(NULL), 0);
}
END_TEST

/* ---- the API ---- */

START_TEST(both_formats_load)
{
    const char *dirs[] = {TFX "/bpe", TFX "/json"};
    for (int i = 0; i < 2; i++) {
        txt_tokenizer *t = load(dirs[i]);
        ck_assert_int_eq(txt_vocab_size(t), 49408);
        ck_assert_int_eq(txt_bos_id(t), 49406);
        ck_assert_int_eq(txt_eos_id(t), 49407);
        ck_assert_int_eq(txt_pad_id(t), 49407);
        ck_assert_int_eq(txt_max_length(t), 77);
        int32_t ids[8];
        ck_assert_int_eq(txt_encode(t, "a photo of a cat", 16, ids, 8), 7);
        int32_t want[] = {49406, 320, 1125, 539, 320, 2368, 49407};
        for (int k = 0; k < 7; k++)
            ck_assert_int_eq(ids[k], want[k]);
        txt_tokenizer_free(t);
    }
    txt_tokenizer_free(NULL);
    ck_assert_int_eq(txt_bos_id(NULL), -1);
    ck_assert_int_eq(txt_vocab_size(NULL), 0);
}
END_TEST

START_TEST(max_ids_edges)
{
    txt_tokenizer *t = load(TFX "/bpe");
    int32_t ids[8] = {-5, -5, -5, -5, -5, -5, -5, -5};
    ck_assert_int_eq(txt_encode(t, "a photo", 7, ids, 0), 0);
    ck_assert_int_eq(ids[0], -5);
    ck_assert_int_eq(txt_encode(t, "a photo", 7, ids, 1), 1);
    ck_assert_int_eq(ids[0], 49406);
    ck_assert_int_eq(ids[1], -5);
    ck_assert_int_eq(txt_encode(t, "a photo", 7, ids, 2), 2);
    ck_assert_int_eq(ids[1], 49407);
    ck_assert_int_eq(ids[2], -5);
    ck_assert_int_eq(txt_encode(t, "a photo", 7, ids, 3), 3);
    ck_assert_int_eq(ids[1], 320);
    ck_assert_int_eq(ids[2], 49407);
    ck_assert_int_eq(txt_encode(t, "", 0, ids, 8), 2);
    ck_assert_int_eq(txt_encode(t, NULL, 0, ids, 8), 2);
    ck_assert_int_eq(txt_encode(t, NULL, 3, ids, 8), -1);
    ck_assert_int_eq(txt_encode(t, "a", 1, ids, -1), -1);
    ck_assert_int_eq(txt_encode(t, "a", 1, NULL, 4), -1);
    ck_assert_int_eq(txt_encode(t, "a", 1, NULL, 0), 0);
    ck_assert_int_eq(txt_encode(NULL, "a", 1, ids, 4), -1);
    /* Length-delimited: the NUL and what follows are text. */
    ck_assert_int_eq(txt_encode(t, "a\0b", 3, ids, 8), 5);
    ck_assert_int_eq(ids[2], 444);
    txt_tokenizer_free(t);
}
END_TEST

/* Several threads on one tokenizer, its word cache shared. */
typedef struct {
    txt_tokenizer *t;
    json_t *root;   /* cases.json or siglip.json */
    int padded;
    int bad;
} thread_arg;

static void *thread_main(void *p)
{
    thread_arg *a = p;
    json_t *cases = json_object_get(a->root, "cases");
    int ml = (int)json_integer_value(json_object_get(a->root, "max_length"));
    int32_t ids[80];
    for (int rep = 0; rep < 3; rep++) {
        size_t i;
        json_t *c;
        json_array_foreach(cases, i, c)
        {
            size_t n;
            unsigned char *s =
                unhex(json_string_value(json_array_get(c, 0)), &n);
            int k = a->padded
                        ? txt_encode_padded(a->t, (const char *)s, n, ids, ml)
                        : txt_encode(a->t, (const char *)s, n, ids, ml);
            a->bad += k < 0 || !same_ids(ids, a->padded ? ml : k,
                                         json_array_get(c, 1));
            free(s);
        }
    }
    return NULL;
}

/* Four threads encoding every case on one tokenizer of `dir`. */
static void run_threads(const char *dir, json_t *root, int padded)
{
    txt_tokenizer *t = load(dir);
    pthread_t th[4];
    thread_arg a[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (thread_arg){t, root, padded, 0};
        ck_assert_int_eq(pthread_create(&th[i], NULL, thread_main, &a[i]),
                         0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(a[i].bad, 0);
    }
    txt_tokenizer_free(t);
}

/* The JSON is parsed before the threads start. */
START_TEST(threads_share_a_tokenizer)
{
    run_threads(TFX "/bpe", cases_json(), 0);
    run_threads(TFX "/siglip", siglip_json(), 1);
    run_threads(TFX "/gemma", gemma_json("gemma"), 1);
}
END_TEST

/* ---- malformed files ---- */

static char *dir;

static void dir_setup(void)
{
    dir = tu_tmpdir();
    ck_assert_ptr_nonnull(dir);
}

static void dir_teardown(void)
{
    tu_rmrf(dir);
    free(dir);
    dir = NULL;
}

static void put(const char *name, const char *text)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    ck_assert_int_eq(tu_write(p, text, strlen(text)), 0);
}

static void put_json(const char *name, json_t *j)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    ck_assert_int_eq(json_dump_file(j, p, JSON_COMPACT), 0);
}

static void copy_in(const char *src, const char *name)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    ck_assert_int_eq(tu_copy(src, p), 0);
}

/* Loading `dir` fails with `want` and a message holding `needle`. */
static void expect_fail(txt_status want, const char *needle)
{
    char err[512] = "";
    txt_tokenizer *t = (txt_tokenizer *)&err;  /* must stay untouched */
    txt_status st = txt_tokenizer_load(dir, &t, err, sizeof err);
    printf("  %-22s %s\n", txt_status_str(st), err);
    fflush(stdout);
    ck_assert_msg(st == want, "got %s (%s), want %s", txt_status_str(st),
                  err, txt_status_str(want));
    ck_assert_ptr_eq(t, (txt_tokenizer *)&err);
    ck_assert_msg(strstr(err, needle), "message \"%s\" lacks \"%s\"", err,
                  needle);
}

/* Loading `dir` with tokenizer.json replaced by `j` (which this frees)
 * fails as expect_fail says. */
static void expect_json_fail(json_t *j, txt_status want, const char *needle)
{
    put_json("tokenizer.json", j);
    json_decref(j);
    expect_fail(want, needle);
}

/* A small valid vocab.json: the byte symbols of "abc </w>" and two
 * merges. */
static const char small_vocab[] =
    "{\"a\": 0, \"b\": 1, \"c\": 2, \"a</w>\": 3, \"b</w>\": 4, "
    "\"c</w>\": 5, \"ab\": 6, \"abc</w>\": 7, \"<|startoftext|>\": 8, "
    "\"<|endoftext|>\": 9}";

START_TEST(small_files_load)
{
    put("vocab.json", small_vocab);
    put("merges.txt", "#version: 0.2\r\na b\r\nab c</w>\r\n");
    char err[256];
    txt_tokenizer *t = NULL;
    ck_assert_int_eq(txt_tokenizer_load(dir, &t, err, sizeof err), TXT_OK);
    int32_t ids[16];
    int n = txt_encode(t, "ABC abc ca xyz", 14, ids, 16);
    /* x, y, z are not in this vocabulary: each is the unknown token,
     * <|endoftext|> by default. */
    int32_t want[] = {8, 7, 7, 2, 3, 9, 9, 9, 9};
    ck_assert_int_eq(n, 9);
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(ids[i], want[i]);
    ck_assert_int_eq(txt_vocab_size(t), 10);
    ck_assert_int_eq(txt_max_length(t), 0);
    txt_tokenizer_free(t);
}
END_TEST

START_TEST(no_files)
{
    expect_fail(TXT_E_NOTFOUND, "no tokenizer.json");
    put("vocab.json", small_vocab);
    expect_fail(TXT_E_NOTFOUND, "merges.txt");
    char *keep = dir;
    dir = "/nonexistent/vit-text";
    expect_fail(TXT_E_NOTFOUND, "/nonexistent/vit-text");
    dir = keep;
    char err[64];
    ck_assert_int_eq(txt_tokenizer_load(NULL, NULL, err, sizeof err),
                     TXT_E_ARG);
}
END_TEST

START_TEST(bad_vocab_json)
{
    put("merges.txt", "#version: 0.2\na b\n");
    put("vocab.json", "{\"a\": 0, \"b\": ");
    expect_fail(TXT_E_FORMAT, "vocab.json: line 1");
    put("vocab.json", "[\"a\", \"b\"]");
    expect_fail(TXT_E_FORMAT, "vocab.json: the vocabulary is not a JSON");
    put("vocab.json", "{\"a\": \"zero\"}");
    expect_fail(TXT_E_FORMAT, "vocab.json: the id of \"a\"");
    put("vocab.json", "{\"a\": -4}");
    expect_fail(TXT_E_FORMAT, "not an integer");
    put("vocab.json", "{}");
    expect_fail(TXT_E_FORMAT, "empty");
}
END_TEST

START_TEST(bad_merges_txt)
{
    put("vocab.json", small_vocab);
    put("merges.txt", "#version: 0.2\na b\nab c</w> x\n");
    expect_fail(TXT_E_FORMAT, "merges.txt: line 3");
    put("merges.txt", "#version: 0.2\na b\n\nab c</w>\n");
    expect_fail(TXT_E_FORMAT, "merges.txt: line 3");
    put("merges.txt", "#version: 0.2\na q\n");
    expect_fail(TXT_E_FORMAT, "\"q\" is not in the vocabulary");
    put("merges.txt", "b c\n");
    expect_fail(TXT_E_FORMAT, "the merged token is not in the vocabulary");
    put("merges.txt", "a b\n");
    put("tokenizer_config.json", "{\"bos_token\": \"\"}");
    expect_fail(TXT_E_FORMAT, "the bos token is empty");
    put("tokenizer_config.json", "{\"eos_token\": {\"normalized\": true}}");
    expect_fail(TXT_E_FORMAT, "a special token has no content");
    put("tokenizer_config.json", "{\"eos_token\": ");
    expect_fail(TXT_E_FORMAT, "tokenizer_config.json: line 1");
    put("tokenizer_config.json", "[1]");
    expect_fail(TXT_E_FORMAT, "tokenizer_config.json: not a JSON object");
}
END_TEST

/* Each mutation of the tiny fixture's tokenizer.json is one fault. */
START_TEST(bad_tokenizer_json)
{
    json_error_t je;
    json_t *good = json_load_file(TFX "/tiny/tokenizer.json", 0, &je);
    ck_assert_ptr_nonnull(good);
    json_t *j;

    put("tokenizer.json", "{\"model\": {\"vocab\": {");
    expect_fail(TXT_E_FORMAT, "tokenizer.json: line 1");

    j = json_deep_copy(good);
    json_object_set_new(j, "normalizer", json_null());
    expect_json_fail(j, TXT_E_UNSUPPORTED, "normalizer");

    j = json_deep_copy(good);
    json_array_remove(json_object_get(json_object_get(j, "normalizer"),
                                      "normalizers"), 2);
    expect_json_fail(j, TXT_E_UNSUPPORTED, "normalizer");

    j = json_deep_copy(good);
    json_t *split = json_array_get(
        json_object_get(json_object_get(j, "pre_tokenizer"), "pretokenizers"),
        0);
    json_object_set_new(json_object_get(split, "pattern"), "Regex",
                        json_string("\\w+|[^\\w\\s]+"));
    expect_json_fail(j, TXT_E_UNSUPPORTED, "pre-tokenizer");

    j = json_deep_copy(good);
    json_object_set_new(json_object_get(j, "model"), "type",
                        json_string("WordPiece"));
    expect_json_fail(j, TXT_E_UNSUPPORTED, "not BPE");

    j = json_deep_copy(good);
    json_object_set_new(json_object_get(j, "model"), "end_of_word_suffix",
                        json_null());
    expect_json_fail(j, TXT_E_UNSUPPORTED, "end_of_word_suffix");

    j = json_deep_copy(good);
    json_array_append_new(json_object_get(json_object_get(j, "model"),
                                          "merges"),
                          json_pack("[sss]", "a", "b", "c"));
    expect_json_fail(j, TXT_E_FORMAT, "neither");

    j = json_deep_copy(good);
    json_array_append_new(json_object_get(json_object_get(j, "model"),
                                          "merges"),
                          json_string("a  b"));
    expect_json_fail(j, TXT_E_FORMAT, "one space");

    j = json_deep_copy(good);
    json_array_append_new(json_object_get(json_object_get(j, "model"),
                                          "merges"),
                          json_pack("[ss]", "zz", "b"));
    expect_json_fail(j, TXT_E_FORMAT, "\"zz\" is not in the vocabulary");

    j = json_deep_copy(good);
    json_object_set_new(json_object_get(j, "model"), "vocab",
                        json_pack("[s]", "a"));
    expect_json_fail(j, TXT_E_FORMAT, "not a JSON object");

    j = json_deep_copy(good);
    json_object_set_new(json_array_get(json_object_get(j, "added_tokens"), 0),
                        "lstrip", json_true());
    expect_json_fail(j, TXT_E_UNSUPPORTED, "lstrip");

    j = json_deep_copy(good);
    json_object_set_new(json_array_get(json_object_get(j, "added_tokens"), 0),
                        "id", json_string("x"));
    expect_json_fail(j, TXT_E_FORMAT, "added token 1");

    /* The untouched copy loads. */
    put_json("tokenizer.json", good);
    char err[256];
    txt_tokenizer *t = NULL;
    ck_assert_int_eq(txt_tokenizer_load(dir, &t, err, sizeof err), TXT_OK);
    txt_tokenizer_free(t);
    json_decref(good);
}
END_TEST

/* merges.txt with Windows line endings is the same merges.txt. */
/* SigLIP's spiece.model: missing, broken, of a kind we do not run; and
 * alone, which loads as SigLIP's with its defaults. */
START_TEST(bad_spiece_model)
{
    put("tokenizer_config.json", "{\"tokenizer_class\": \"SiglipTokenizer\"}");
    expect_fail(TXT_E_IO, "spiece.model");
    put("spiece.model", "hello");
    expect_fail(TXT_E_FORMAT, "spiece.model");
    size_t n;
    unsigned char *m = tu_read(TFX "/siglip/spiece.model", &n);
    ck_assert_ptr_nonnull(m);
    char p[4096];
    snprintf(p, sizeof p, "%s/spiece.model", dir);
    ck_assert_int_eq(tu_write(p, m, 1000), 0);
    expect_fail(TXT_E_FORMAT, "spiece.model");
    /* A trainer_spec saying model_type BPE, merged into the model's. */
    unsigned char *b = malloc(n + 4);
    memcpy(b, m, n);
    memcpy(b + n, "\x12\x02\x18\x02", 4);
    ck_assert_int_eq(tu_write(p, b, n + 4), 0);
    expect_fail(TXT_E_UNSUPPORTED, "BPE");
    free(b);
    ck_assert_int_eq(tu_write(p, m, n), 0);
    put("tokenizer_config.json",
        "{\"tokenizer_class\": \"SiglipTokenizer\", \"added_tokens_decoder\":"
        " {\"1\": {\"content\": \"</s>\", \"single_word\": true}}}");
    expect_fail(TXT_E_UNSUPPORTED, "single_word");
    /* The model alone. */
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    ck_assert_int_eq(remove(p), 0);
    char err[256];
    txt_tokenizer *t = NULL;
    ck_assert_int_eq(txt_tokenizer_load(dir, &t, err, sizeof err), TXT_OK);
    ck_assert_int_eq(txt_kind_of(t), TXT_KIND_SIGLIP);
    ck_assert_int_eq(txt_max_length(t), 64);
    ck_assert_int_eq(txt_eos_id(t), 1);
    ck_assert_int_eq(txt_pad_id(t), 1);
    txt_tokenizer_free(t);
    free(m);
}
END_TEST

/* gemma/ copied into the temporary directory with its
 * tokenizer_config.json changed by `edit` (NULL: as it is). */
static void gemma_copy(void (*edit)(json_t *cfg))
{
    copy_in(TFX "/gemma/tokenizer.json", "tokenizer.json");
    json_error_t je;
    json_t *cfg = json_load_file(TFX "/gemma/tokenizer_config.json",
                                 JSON_DECODE_INT_AS_REAL, &je);
    ck_assert_ptr_nonnull(cfg);
    if (edit)
        edit(cfg);
    put_json("tokenizer_config.json", cfg);
    json_decref(cfg);
}

static void no_padding_side(json_t *cfg)
{
    json_object_del(cfg, "padding_side");
}

/* With no padding_side GemmaTokenizer pads on the left (the generator
 * made these ids from the same change to the same files). */
START_TEST(gemma_pads_left)
{
    gemma_copy(no_padding_side);
    txt_tokenizer *t = load(dir);
    ck_assert_int_eq(txt_pads_left(t), 1);
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(gemma_json("gemma"), "left"), i, c)
    {
        size_t n;
        unsigned char *s = unhex(json_string_value(json_array_get(c, 0)), &n);
        int32_t ids[16];
        int k = txt_encode_padded(t, (const char *)s, n, ids, 16);
        int want = 0;
        for (int j = 0; j < 16; j++)
            want += json_integer_value(json_array_get(json_array_get(c, 1),
                                                      (size_t)j)) != 0;
        if (!same_ids(ids, 16, json_array_get(c, 1))) {
            print_input(s, n);
            print_ids("ours", ids, 16);
            print_ref(json_array_get(c, 1));
            ck_abort_msg("left padding case %zu differs", i);
        }
        ck_assert_int_eq(k, want);
        free(s);
    }
    txt_tokenizer_free(t);
}
END_TEST

static void side_left(json_t *cfg)
{
    json_object_set_new(cfg, "truncation_side", json_string("left"));
}

static void side_odd(json_t *cfg)
{
    json_object_set_new(cfg, "padding_side", json_string("middle"));
}

static void class_fast(json_t *cfg)
{
    json_object_set_new(cfg, "tokenizer_class",
                        json_string("GemmaTokenizerFast"));
}

static void class_none(json_t *cfg)
{
    json_object_del(cfg, "tokenizer_class");
}

static void eos_rstrip(json_t *cfg)
{
    json_object_set_new(
        json_object_get(json_object_get(cfg, "added_tokens_decoder"), "1"),
        "rstrip", json_true());
}

/* Gemma's files: what is refused, and what still loads. */
START_TEST(bad_gemma)
{
    gemma_copy(side_left);
    expect_fail(TXT_E_UNSUPPORTED, "truncation_side");
    gemma_copy(side_odd);
    expect_fail(TXT_E_FORMAT, "tokenizer_config.json: padding_side");
    char p[4096];
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    ck_assert_int_eq(remove(p), 0);
    expect_fail(TXT_E_NOTFOUND, "no tokenizer.json, which GemmaTokenizer");

    json_error_t je;
    json_t *good = json_load_file(TFX "/gemma/tokenizer.json", 0, &je);
    ck_assert_ptr_nonnull(good);
    json_t *j;
    gemma_copy(NULL);

    /* The class decides the pipeline: the file's normalizer is not read. */
    j = json_deep_copy(good);
    json_object_set_new(j, "normalizer", json_null());
    put_json("tokenizer.json", j);
    txt_tokenizer *t = load(dir);
    txt_tokenizer_free(t);
    /* With no class the file is run, and must be Gemma's. */
    gemma_copy(class_none);
    expect_json_fail(j, TXT_E_UNSUPPORTED, "tokenizer.json: the normalizer");

    j = json_deep_copy(good);
    json_object_set_new(j, "pre_tokenizer",
                        json_pack("{ss}", "type", "Whitespace"));
    expect_json_fail(j, TXT_E_UNSUPPORTED, "pre-tokenizer");

    j = json_deep_copy(good);
    json_object_set_new(json_object_get(j, "model"), "dropout",
                        json_real(0.1));
    expect_json_fail(j, TXT_E_UNSUPPORTED, "dropout");

    j = json_deep_copy(good);
    json_object_set_new(j, "truncation",
                        json_pack("{si}", "max_length", 8));
    expect_json_fail(j, TXT_E_UNSUPPORTED, "truncation");

    /* The post-processor, with the class or without. */
    gemma_copy(NULL);
    j = json_deep_copy(good);
    json_object_set_new(j, "post_processor",
                        json_pack("{ss}", "type", "ByteLevel"));
    expect_json_fail(j, TXT_E_UNSUPPORTED, "TemplateProcessing");

    j = json_deep_copy(good);
    json_array_remove(json_object_get(json_object_get(j, "post_processor"),
                                      "single"), 0);
    expect_json_fail(j, TXT_E_UNSUPPORTED, "no $A");

    j = json_deep_copy(good);
    json_object_del(json_object_get(json_object_get(j, "post_processor"),
                                    "special_tokens"), "<eos>");
    expect_json_fail(j, TXT_E_FORMAT, "does not define");

    /* An added token that strips spaces beside it. */
    gemma_copy(eos_rstrip);
    expect_fail(TXT_E_UNSUPPORTED, "rstrip");

    /* "GemmaTokenizerFast" is GemmaTokenizer; with no post-processor
     * nothing frames the text. */
    gemma_copy(class_fast);
    j = json_deep_copy(good);
    json_object_set_new(j, "post_processor", json_null());
    put_json("tokenizer.json", j);
    t = load(dir);
    ck_assert_int_eq(txt_kind_of(t), TXT_KIND_GEMMA);
    int32_t ids[4];
    ck_assert_int_eq(txt_encode(t, "", 0, ids, 4), 0);
    ck_assert_int_eq(txt_encode_padded(t, "", 0, ids, 4), 0);
    ck_assert_int_eq(ids[3], 0);
    txt_tokenizer_free(t);
    json_decref(j);
    json_decref(good);
}
END_TEST

START_TEST(crlf_merges)
{
    size_t n;
    unsigned char *m = tu_read(TFX "/bpe/merges.txt", &n);
    ck_assert_ptr_nonnull(m);
    unsigned char *crlf = malloc(2 * n);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (m[i] == '\n')
            crlf[k++] = '\r';
        crlf[k++] = m[i];
    }
    char p[4096];
    snprintf(p, sizeof p, "%s/merges.txt", dir);
    ck_assert_int_eq(tu_write(p, crlf, k), 0);
    copy_in(TFX "/bpe/vocab.json", "vocab.json");
    free(m);
    free(crlf);
    txt_tokenizer *t = load(dir);
    int32_t ids[16];
    ck_assert_int_eq(txt_encode(t, "a photo of a cat", 16, ids, 16), 7);
    ck_assert_int_eq(ids[2], 1125);
    txt_tokenizer_free(t);
}
END_TEST

Suite *text_suite(void)
{
    Suite *s = suite_create("text");
    TCase *tc = tcase_create("reference");
    tcase_add_test(tc, reference_vocab_merges);
    tcase_add_test(tc, reference_tokenizer_json);
    tcase_add_test(tc, reference_truncation);
    tcase_add_test(tc, reference_tiny);
    tcase_add_test(tc, reference_special_tokens);
    tcase_add_test(tc, reference_every_code_point);
    tcase_add_test(tc, reference_one_megabyte);
    tcase_set_timeout(tc, 300);
    suite_add_tcase(s, tc);

    tc = tcase_create("siglip");
    tcase_add_test(tc, siglip_reference);
    tcase_add_test(tc, siglip_truncation);
    tcase_add_test(tc, siglip_one_megabyte);
    tcase_add_test(tc, siglip_every_code_point);
    tcase_add_test(tc, siglip_api);
    tcase_set_timeout(tc, 300);
    suite_add_tcase(s, tc);

    tc = tcase_create("gemma");
    tcase_add_test(tc, gemma_reference);
    tcase_add_test(tc, gemma_truncation);
    tcase_add_test(tc, gemma_one_megabyte);
    tcase_add_test(tc, gemma_every_code_point);
    tcase_add_test(tc, gemma_tiny);
    tcase_add_test(tc, gemma_api);
    tcase_set_timeout(tc, 300);
    suite_add_tcase(s, tc);

    tc = tcase_create("api");
    tcase_add_test(tc, both_formats_load);
    tcase_add_test(tc, max_ids_edges);
    tcase_add_test(tc, threads_share_a_tokenizer);
    tcase_set_timeout(tc, 300);
    suite_add_tcase(s, tc);

    tc = tcase_create("bad_files");
    tcase_add_checked_fixture(tc, dir_setup, dir_teardown);
    tcase_add_test(tc, small_files_load);
    tcase_add_test(tc, no_files);
    tcase_add_test(tc, bad_vocab_json);
    tcase_add_test(tc, bad_merges_txt);
    tcase_add_test(tc, bad_tokenizer_json);
    tcase_add_test(tc, crlf_merges);
    tcase_add_test(tc, bad_spiece_model);
    tcase_add_test(tc, gemma_pads_left);
    tcase_add_test(tc, bad_gemma);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}
