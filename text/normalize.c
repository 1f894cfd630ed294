/*
 * Text normalization as CLIPTokenizerFast does it before splitting words:
 * repairing invalid UTF-8 (Python's "replace" rule), then NFC, White_Space
 * runs to one space, and lowercasing. utf8proc does NFC and lowercasing; the
 * two small tables below hold the characters on which utf8proc 2.8 (Unicode
 * 15) and the reference disagree. Both tables were found by comparing, code
 * point by code point, utf8proc with the `tokenizers` normalizers
 * (tests/gen_fixtures_text.py's block fixture checks every code point again
 * at test time). Gemma's normalization (spaces made "▁", after the same
 * lowercasing for Siglip2Tokenizer) is at the end.
 */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "text/text_impl.h"

int txt_buf_reserve(txt_buf *b, size_t extra)
{
    if (b->cap - b->n >= extra)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->n < extra) {
        if (cap > SIZE_MAX / 2)
            return -1;
        cap *= 2;
    }
    uint8_t *p = realloc(b->p, cap);
    if (!p)
        return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

void txt_buf_free(txt_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}

void txt_norm_scratch_free(txt_norm_scratch *sc)
{
    free(sc->cp);
    sc->cp = NULL;
    sc->cap = 0;
}

/* ---- UTF-8 ---- */

/* The length (1..4) of the well-formed sequence at s, or 0 when the bytes
 * there are ill-formed; then *bad is the length of the maximal subpart
 * (the lead byte and the continuation bytes that were still possible),
 * which Unicode (§3.9, "U+FFFD substitution of maximal subparts") and
 * Python replace by one U+FFFD. */
static size_t utf8_seq(const uint8_t *s, size_t n, size_t *bad)
{
    uint8_t c = s[0];
    if (c < 0x80)
        return 1;
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        need = 1;
    else if (c == 0xE0)
        need = 2, lo = 0xA0;          /* no overlong forms */
    else if (c == 0xED)
        need = 2, hi = 0x9F;          /* no surrogates */
    else if (c >= 0xE1 && c <= 0xEF)
        need = 2;
    else if (c == 0xF0)
        need = 3, lo = 0x90;          /* no overlong forms */
    else if (c == 0xF4)
        need = 3, hi = 0x8F;          /* nothing above U+10FFFF */
    else if (c >= 0xF1 && c <= 0xF3)
        need = 3;
    else {
        *bad = 1;
        return 0;
    }
    for (size_t i = 1; i <= need; i++) {
        if (i >= n || s[i] < lo || s[i] > hi) {
            *bad = i;
            return 0;
        }
        lo = 0x80, hi = 0xBF;
    }
    return need + 1;
}

size_t txt_utf8_valid_prefix(const uint8_t *s, size_t n)
{
    size_t i = 0, bad;
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t k = utf8_seq(s + i, n - i, &bad);
        if (!k)
            return i;
        i += k;
    }
    return n;
}

int txt_utf8_repair(const uint8_t *s, size_t n, txt_buf *out)
{
    size_t i = 0, bad;
    while (i < n) {
        size_t k = utf8_seq(s + i, n - i, &bad);
        if (txt_buf_reserve(out, 4))
            return -1;
        if (k) {
            memcpy(out->p + out->n, s + i, k);
            out->n += k;
            i += k;
        } else {
            memcpy(out->p + out->n, "\xEF\xBF\xBD", 3);
            out->n += 3;
            i += bad;
        }
    }
    return 0;
}

int txt_utf8_decode(const uint8_t *s, int32_t *cp)
{
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    if (s[0] < 0xE0) {
        *cp = (s[0] & 0x1F) << 6 | (s[1] & 0x3F);
        return 2;
    }
    if (s[0] < 0xF0) {
        *cp = (s[0] & 0x0F) << 12 | (s[1] & 0x3F) << 6 | (s[2] & 0x3F);
        return 3;
    }
    *cp = (s[0] & 0x07) << 18 | (s[1] & 0x3F) << 12 | (s[2] & 0x3F) << 6 |
          (s[3] & 0x3F);
    return 4;
}

/* ---- the tables ---- */

/* Characters the reference's NFC (the unicode-normalization-alignments
 * crate, Unicode 9.0) does not know but utf8proc does: combining marks
 * added since (the reference gives them class 0 and so never reorders
 * them) and Dives Akuru's U+11938 = U+11935 U+11930 (never decomposed or
 * composed there). To the reference all of these are plain starters that
 * combine with nothing, so NFC is run on the stretches between them.
 * U+11A7 is here for another reason: it is the Hangul T base, not itself a
 * trailing consonant, and utf8proc 2.8 wrongly composes an LV syllable
 * with it (adding T index 0, which swallows the U+11A7); it composes with
 * nothing in Unicode. */
static const txt_range nfc_inert[] = {
    {0x7FD, 0x7FD},     {0x898, 0x89F},     {0x8CA, 0x8D3},
    {0x9FE, 0x9FE},     {0xC3C, 0xC3C},     {0xD3B, 0xD3C},
    {0xEBA, 0xEBA},     {0x11A7, 0x11A7},   {0x1715, 0x1715},
    {0x1ABF, 0x1ACE},
    {0x1DF6, 0x1DFA},   {0xA82C, 0xA82C},   {0x10D24, 0x10D27},
    {0x10EAB, 0x10EAC}, {0x10EFD, 0x10EFF}, {0x10F46, 0x10F50},
    {0x10F82, 0x10F85}, {0x11070, 0x11070}, {0x1133B, 0x1133B},
    {0x1145E, 0x1145E}, {0x11839, 0x1183A}, {0x11930, 0x11930},
    {0x11935, 0x11935}, {0x11938, 0x11938}, {0x1193D, 0x1193E},
    {0x11943, 0x11943}, {0x119E0, 0x119E0}, {0x11A34, 0x11A34},
    {0x11A47, 0x11A47}, {0x11A99, 0x11A99}, {0x11D42, 0x11D42},
    {0x11D44, 0x11D45}, {0x11D97, 0x11D97}, {0x11F41, 0x11F42},
    {0x16FF0, 0x16FF1}, {0x1E08F, 0x1E08F}, {0x1E130, 0x1E136},
    {0x1E2AE, 0x1E2AE}, {0x1E2EC, 0x1E2EF}, {0x1E4EC, 0x1E4EF},
};

/* Where Rust's char::to_lowercase (Unicode 17) differs from
 * utf8proc_tolower: U+0130 'İ', whose lowercase is two characters
 * ("i" + U+0307 COMBINING DOT ABOVE; utf8proc gives the simple mapping
 * "i"), and the case pairs added in Unicode 16 and 17 (Todhri U+1C89,
 * Latin U+A7CB.., Garay U+10D50.., Beria Erfe U+16EA0..). */
static const struct {
    int32_t c, l0, l1;
} lower_exc[] = {
    {0x0130, 0x0069, 0x0307}, {0x1C89, 0x1C8A, 0}, {0xA7CB, 0x0264, 0},
    {0xA7CC, 0xA7CD, 0},      {0xA7CE, 0xA7CF, 0}, {0xA7D2, 0xA7D3, 0},
    {0xA7D4, 0xA7D5, 0},      {0xA7DA, 0xA7DB, 0}, {0xA7DC, 0x019B, 0},
    {0x10D50, 0x10D70, 0},    {0x10D51, 0x10D71, 0}, {0x10D52, 0x10D72, 0},
    {0x10D53, 0x10D73, 0},    {0x10D54, 0x10D74, 0}, {0x10D55, 0x10D75, 0},
    {0x10D56, 0x10D76, 0},    {0x10D57, 0x10D77, 0}, {0x10D58, 0x10D78, 0},
    {0x10D59, 0x10D79, 0},    {0x10D5A, 0x10D7A, 0}, {0x10D5B, 0x10D7B, 0},
    {0x10D5C, 0x10D7C, 0},    {0x10D5D, 0x10D7D, 0}, {0x10D5E, 0x10D7E, 0},
    {0x10D5F, 0x10D7F, 0},    {0x10D60, 0x10D80, 0}, {0x10D61, 0x10D81, 0},
    {0x10D62, 0x10D82, 0},    {0x10D63, 0x10D83, 0}, {0x10D64, 0x10D84, 0},
    {0x10D65, 0x10D85, 0},    {0x16EA0, 0x16EBB, 0}, {0x16EA1, 0x16EBC, 0},
    {0x16EA2, 0x16EBD, 0},    {0x16EA3, 0x16EBE, 0}, {0x16EA4, 0x16EBF, 0},
    {0x16EA5, 0x16EC0, 0},    {0x16EA6, 0x16EC1, 0}, {0x16EA7, 0x16EC2, 0},
    {0x16EA8, 0x16EC3, 0},    {0x16EA9, 0x16EC4, 0}, {0x16EAA, 0x16EC5, 0},
    {0x16EAB, 0x16EC6, 0},    {0x16EAC, 0x16EC7, 0}, {0x16EAD, 0x16EC8, 0},
    {0x16EAE, 0x16EC9, 0},    {0x16EAF, 0x16ECA, 0}, {0x16EB0, 0x16ECB, 0},
    {0x16EB1, 0x16ECC, 0},    {0x16EB2, 0x16ECD, 0}, {0x16EB3, 0x16ECE, 0},
    {0x16EB4, 0x16ECF, 0},    {0x16EB5, 0x16ED0, 0}, {0x16EB6, 0x16ED1, 0},
    {0x16EB7, 0x16ED2, 0},    {0x16EB8, 0x16ED3, 0},
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

int txt_in_ranges(const txt_range *r, size_t n, int32_t c)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c > r[mid].hi)
            lo = mid + 1;
        else if (c < r[mid].lo)
            hi = mid;
        else
            return 1;
    }
    return 0;
}

static int nfc_is_inert(int32_t c)
{
    return c >= nfc_inert[0].lo &&
           txt_in_ranges(nfc_inert, COUNT(nfc_inert), c);
}

/* Lowercases c into l[0..]; returns the count (1 or 2). */
static int to_lower(int32_t c, int32_t *l)
{
    if (c < 0x80) {
        l[0] = (c >= 'A' && c <= 'Z') ? c + 32 : c;
        return 1;
    }
    size_t lo = 0, hi = COUNT(lower_exc);
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c > lower_exc[mid].c)
            lo = mid + 1;
        else if (c < lower_exc[mid].c)
            hi = mid;
        else {
            l[0] = lower_exc[mid].l0;
            l[1] = lower_exc[mid].l1;
            return l[1] ? 2 : 1;
        }
    }
    l[0] = utf8proc_tolower(c);
    return 1;
}

/* Oniguruma's \s in the reference's Replace(\s+, " "): the Unicode
 * White_Space property. (PCRE2's \s also has U+180E, which Unicode 6.3
 * moved out of White_Space; the reference keeps it as a character.) */
static int is_space(int32_t c)
{
    if (c <= 0x20)
        return c == 0x20 || (c >= 0x09 && c <= 0x0D);
    if (c < 0x85)
        return 0;
    return c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000;
}

/* ---- normalization ---- */

#define NFC_OPTS (UTF8PROC_STABLE | UTF8PROC_COMPOSE)

/* Appends the NFC of the UTF-8 stretch s[0..n) to sc->cp from *len. */
static int nfc_stretch(const uint8_t *s, size_t n, txt_norm_scratch *sc,
                       size_t *len)
{
    if (n == 0)
        return 0;
    for (;;) {
        size_t avail = sc->cap - *len;
        utf8proc_ssize_t r = utf8proc_decompose(
            s, (utf8proc_ssize_t)n, sc->cp + *len, (utf8proc_ssize_t)avail,
            NFC_OPTS);
        if (r < 0)
            return -1;
        if ((size_t)r <= avail) {
            r = utf8proc_normalize_utf32(sc->cp + *len, r, NFC_OPTS);
            if (r < 0)
                return -1;
            *len += (size_t)r;
            return 0;
        }
        size_t cap = sc->cap ? sc->cap : 64;
        while (cap - *len < (size_t)r)
            cap *= 2;
        int32_t *p = realloc(sc->cp, cap * sizeof *p);
        if (!p)
            return -1;
        sc->cp = p;
        sc->cap = cap;
    }
}

static int push_cp(txt_norm_scratch *sc, size_t *len, int32_t c)
{
    if (*len == sc->cap) {
        size_t cap = sc->cap ? sc->cap * 2 : 64;
        int32_t *p = realloc(sc->cp, cap * sizeof *p);
        if (!p)
            return -1;
        sc->cp = p;
        sc->cap = cap;
    }
    sc->cp[(*len)++] = c;
    return 0;
}

int txt_normalize(const uint8_t *s, size_t n, txt_norm_scratch *sc,
                  txt_buf *out)
{
    size_t i = 0;
    while (i < n && s[i] < 0x80)
        i++;
    if (i == n) {
        /* ASCII is already NFC and lowercases byte by byte. */
        if (txt_buf_reserve(out, n))
            return -1;
        int sp = 0;
        for (i = 0; i < n; i++) {
            uint8_t c = s[i];
            if (c == ' ' || (c >= 0x09 && c <= 0x0D)) {
                if (!sp)
                    out->p[out->n++] = ' ';
                sp = 1;
                continue;
            }
            sp = 0;
            out->p[out->n++] = (c >= 'A' && c <= 'Z') ? c + 32 : c;
        }
        return 0;
    }

    /* NFC, stretch by stretch between the characters the reference leaves
     * alone. */
    size_t len = 0, start = 0;
    for (i = 0; i < n;) {
        int32_t c;
        int k = txt_utf8_decode(s + i, &c);
        if (c >= 0x7FD && nfc_is_inert(c)) {
            if (nfc_stretch(s + start, i - start, sc, &len) ||
                push_cp(sc, &len, c))
                return -1;
            start = i + (size_t)k;
        }
        i += (size_t)k;
    }
    if (nfc_stretch(s + start, n - start, sc, &len))
        return -1;

    /* Whitespace, then lowercase, then back to UTF-8. */
    int sp = 0;
    for (size_t j = 0; j < len; j++) {
        int32_t c = sc->cp[j], l[2];
        if (txt_buf_reserve(out, 8))
            return -1;
        if (is_space(c)) {
            if (!sp)
                out->p[out->n++] = ' ';
            sp = 1;
            continue;
        }
        sp = 0;
        int m = to_lower(c, l);
        for (int k = 0; k < m; k++)
            out->n += (size_t)utf8proc_encode_char(l[k], out->p + out->n);
    }
    return 0;
}

/* ---- Gemma ----
 * The `tokenizers` normalizers Lowercase (Rust's char::to_lowercase, as
 * CLIP's above) and Replace(" ", "▁"). Nothing else: Gemma applies no
 * NFC or NFKC, and invalid UTF-8 was repaired before. */

int txt_gemma_normalize(const uint8_t *s, size_t n, int lower, txt_buf *out)
{
    for (size_t i = 0; i < n;) {
        if (txt_buf_reserve(out, 8))
            return -1;
        if (s[i] < 0x80) {
            uint8_t c = s[i++];
            if (c == ' ') {
                memcpy(out->p + out->n, "\xE2\x96\x81", 3);
                out->n += 3;
            } else
                out->p[out->n++] = lower && c >= 'A' && c <= 'Z' ? c + 32 : c;
            continue;
        }
        int32_t c, l[2];
        int k = txt_utf8_decode(s + i, &c);
        if (!lower) {
            memcpy(out->p + out->n, s + i, (size_t)k);
            out->n += (size_t)k;
        } else
            for (int j = 0, m = to_lower(c, l); j < m; j++)
                out->n += (size_t)utf8proc_encode_char(l[j], out->p + out->n);
        i += (size_t)k;
    }
    return 0;
}
