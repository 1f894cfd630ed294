/*
 * open_clip's text cleaning, what its SimpleTokenizer does to a string
 * before CLIP's BPE (tokenizer.py, clean="lower"):
 *
 *     ftfy.fix_text(text); html.unescape twice; strip; whitespace runs to
 *     one space (str.split); str.lower()
 *
 * and its HFTokenizer before the tokenizer it wraps (clean="whitespace":
 * the same without str.lower).
 *
 * ftfy 6.3's fix_text, per line (a segment ends after each "\n"; once a
 * segment holds '<', HTML is no longer unescaped, for it and the rest),
 * repeats until nothing changes: its unescape_html (the entities of its
 * table, with '&' and ';'; numeric references that html.unescape decodes
 * whole); C1 controls read as windows-1252, Latin ligatures split,
 * full-width forms made plain, curly quotes made straight (one composed
 * table); ANSI terminal escapes removed; its control characters removed;
 * NFC. The tables are the references' own (text/gen_clean.py). Not done:
 * ftfy's fix_encoding, the heuristic repair of mojibake ("cafÃ©"), which
 * leaves text that is not mojibake alone; its line-break and surrogate
 * fixes change nothing the whitespace step or UTF-8 input would keep.
 * html.unescape is Python's exactly: numeric references (invalid ones as
 * Python maps them), the html5 names, with or without ';', the longest
 * known prefix of a name.
 */
#include "text/text_impl.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "text/clean_tables.h"

#define N(a) (sizeof(a) / sizeof *(a))

typedef struct {
    int32_t *p;
    size_t n, cap;
} cpbuf;

static int push(cpbuf *b, int32_t c)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 64;
        int32_t *p = realloc(b->p, cap * sizeof *p);
        if (!p)
            return -1;
        b->p = p, b->cap = cap;
    }
    b->p[b->n++] = c;
    return 0;
}

/* Appends the code points of a valid UTF-8 string. */
static int push_utf8(cpbuf *b, const char *s)
{
    const uint8_t *u = (const uint8_t *)s;
    while (*u) {
        int32_t c;
        u += txt_utf8_decode(u, &c);
        if (push(b, c))
            return -1;
    }
    return 0;
}

static int push_all(cpbuf *b, const int32_t *c, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (push(b, c[i]))
            return -1;
    return 0;
}

static int in_pairs(const uint32_t (*r)[2], size_t n, int32_t c)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t m = (lo + hi) / 2;
        if ((uint32_t)c < r[m][0])
            hi = m;
        else if ((uint32_t)c > r[m][1])
            lo = m + 1;
        else
            return 1;
    }
    return 0;
}

/* The value of entity `name` (code points c[0..n)) in a table sorted by
 * name; NULL when absent. */
static const char *lookup(const clean_entity *t, size_t count,
                          const int32_t *c, size_t n)
{
    char key[64];
    if (n >= sizeof key)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (c[i] <= 0 || c[i] >= 0x80)
            return NULL; /* every name is ASCII */
        key[i] = (char)c[i];
    }
    key[n] = 0;
    size_t lo = 0, hi = count;
    while (lo < hi) {
        size_t m = (lo + hi) / 2;
        int d = strcmp(key, t[m].name);
        if (d == 0)
            return t[m].to;
        if (d < 0)
            hi = m;
        else
            lo = m + 1;
    }
    return NULL;
}
#define LOOKUP(table, c, n) lookup(table, N(table), c, n)

static int is_digit(int32_t c) { return c >= '0' && c <= '9'; }
static int is_hex(int32_t c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
static int is_alnum(int32_t c)
{
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Python's html._replace_charref for a numeric reference of value v. */
static int numeric_ref(cpbuf *o, uint64_t v)
{
    for (size_t i = 0; i < N(html_invalid_refs); i++)
        if (html_invalid_refs[i].num == v)
            return push_utf8(o, html_invalid_refs[i].to);
    if ((v >= 0xD800 && v <= 0xDFFF) || v > 0x10FFFF)
        return push(o, 0xFFFD);
    if (in_pairs(html_invalid_cps, N(html_invalid_cps), (int32_t)v))
        return 0;
    return push(o, (int32_t)v);
}

/* Python's html.unescape of c[0..n), appended to o. */
static int html_unescape(cpbuf *o, const int32_t *c, size_t n)
{
    for (size_t i = 0; i < n;) {
        if (c[i] != '&') {
            if (push(o, c[i++]))
                return -1;
            continue;
        }
        size_t j = i + 1;
        /* &#[0-9]+;? and &#[xX][0-9a-fA-F]+;? ('#' starts no name) */
        if (j < n && c[j] == '#') {
            int hex = !(j + 1 < n && is_digit(c[j + 1]));
            size_t d = j + 1 + (size_t)hex, e = d;
            if (hex && !(j + 2 < n && (c[j + 1] | 32) == 'x' &&
                         is_hex(c[j + 2]))) {
                if (push(o, c[i++]))
                    return -1;
                continue;
            }
            uint64_t v = 0;
            while (e < n && (hex ? is_hex(c[e]) : is_digit(c[e]))) {
                int x = is_digit(c[e]) ? c[e] - '0' : (c[e] | 32) - 'a' + 10;
                if (v <= 0x10FFFF) /* past it, all are alike */
                    v = v * (hex ? 16 : 10) + (uint64_t)x;
                e++;
            }
            if (e < n && c[e] == ';')
                e++;
            if (numeric_ref(o, v))
                return -1;
            i = e;
            continue;
        }
        /* [^\t\n\f <&#;]{1,32};? */
        size_t e = j;
        while (e < n && e - j < 32 && c[e] != '\t' && c[e] != '\n' &&
               c[e] != '\f' && c[e] != ' ' && c[e] != '<' && c[e] != '&' &&
               c[e] != '#' && c[e] != ';')
            e++;
        if (e == j) {
            if (push(o, c[i++]))
                return -1;
            continue;
        }
        if (e < n && c[e] == ';')
            e++;
        const char *v = LOOKUP(html5_entities, c + j, e - j);
        if (v) {
            if (push_utf8(o, v))
                return -1;
            i = e;
            continue;
        }
        size_t x = e - j;
        for (x = x - 1; x >= 2; x--)
            if ((v = LOOKUP(html5_entities, c + j, x)))
                break;
        if (v) {
            if (push_utf8(o, v) || push_all(o, c + j + x, e - j - x))
                return -1;
        } else if (push_all(o, c + i, e - i)) {
            return -1;
        }
        i = e;
    }
    return 0;
}

/* ftfy's unescape_html: &#?[0-9A-Za-z]{1,24}; in its table, or a numeric
 * reference html.unescape decodes whole. */
static int ftfy_unescape(cpbuf *o, const int32_t *c, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t j = i + 1, e;
        if (c[i] == '&' && j < n && c[j] == '#')
            j++;
        for (e = j; e < n && e - j <= 24 && is_alnum(c[e]); e++)
            ;
        if (c[i] != '&' || e == j || e - j > 24 || e >= n || c[e] != ';') {
            if (push(o, c[i++]))
                return -1;
            continue;
        }
        e++; /* the match is c[i..e) */
        const char *v = LOOKUP(ftfy_entities, c + i, e - i);
        if (v) {
            if (push_utf8(o, v))
                return -1;
        } else if (c[i + 1] == '#') {
            cpbuf u = {0};
            int semi = 0, rc = html_unescape(&u, c + i, e - i);
            for (size_t k = 0; k < u.n; k++)
                semi |= u.p[k] == ';';
            rc = rc ? rc : semi ? push_all(o, c + i, e - i)
                                : push_all(o, u.p, u.n);
            free(u.p);
            if (rc)
                return -1;
        } else if (push_all(o, c + i, e - i)) {
            return -1;
        }
        i = e;
    }
    return 0;
}

static const char *char_fix(int32_t c)
{
    size_t lo = 0, hi = N(clean_chars);
    while (lo < hi) {
        size_t m = (lo + hi) / 2;
        if ((uint32_t)c == clean_chars[m].cp)
            return clean_chars[m].to;
        if ((uint32_t)c < clean_chars[m].cp)
            hi = m;
        else
            lo = m + 1;
    }
    return NULL;
}

static int nfc(cpbuf *o, const int32_t *c, size_t n);

/* The fixers after unescaping, then NFC, into o. */
static int fix_chars(cpbuf *o, const int32_t *c, size_t n)
{
    cpbuf a = {0}, b = {0};
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        const char *t = char_fix(c[i]);
        rc = t ? push_utf8(&a, t) : push(&a, c[i]);
    }
    /* ANSI_RE: \x1b\[((?:\d|;)*)([a-zA-Z]), \d any decimal digit. */
    for (size_t i = 0; i < a.n && !rc;) {
        if (a.p[i] == 0x1b && i + 1 < a.n && a.p[i + 1] == '[') {
            size_t e = i + 2;
            while (e < a.n &&
                   (a.p[e] == ';' || utf8proc_category(a.p[e]) ==
                                         UTF8PROC_CATEGORY_ND))
                e++;
            if (e < a.n && ((a.p[e] | 32) >= 'a' && (a.p[e] | 32) <= 'z')) {
                i = e + 1;
                continue;
            }
        }
        if (!in_pairs(clean_controls, N(clean_controls), a.p[i]))
            rc = push(&b, a.p[i]);
        i++;
    }
    /* NFC, through UTF-8, of each piece between the U+11A7 (the base of
     * the trailing jamo, which composes with nothing),
     * which utf8proc would wrongly compose into a preceding syllable. */
    for (size_t p0 = 0; p0 < b.n && !rc;) {
        size_t p1 = p0;
        while (p1 < b.n && b.p[p1] != 0x11A7)
            p1++;
        rc = nfc(o, b.p + p0, p1 - p0);
        if (!rc && p1 < b.n)
            rc = push(o, 0x11A7);
        p0 = p1 + 1;
    }
    free(a.p);
    free(b.p);
    return rc;
}

/* NFC of c[0..n), appended to o. */
static int nfc(cpbuf *o, const int32_t *c, size_t n)
{
    int rc = 0;
    txt_buf u = {0};
    for (size_t i = 0; i < n && !rc; i++) {
        rc = txt_buf_reserve(&u, 4);
        if (!rc)
            u.n += (size_t)utf8proc_encode_char(c[i], u.p + u.n);
    }
    if (!rc && u.n) {
        utf8proc_uint8_t *nfc = NULL;
        utf8proc_ssize_t k = utf8proc_map(u.p, (utf8proc_ssize_t)u.n, &nfc,
                                          UTF8PROC_STABLE | UTF8PROC_COMPOSE);
        if (k < 0)
            rc = -1;
        for (utf8proc_ssize_t i = 0; i < k && !rc;) {
            int32_t cp;
            i += txt_utf8_decode(nfc + i, &cp);
            rc = push(o, cp);
        }
        free(nfc);
    }
    txt_buf_free(&u);
    return rc;
}

/* ftfy.fix_text of c[0..n), appended to o. */
static int ftfy_fix(cpbuf *o, const int32_t *c, size_t n)
{
    int html = 1, rc = 0;
    for (size_t s = 0; s < n && !rc;) {
        size_t e = s;
        while (e < n && c[e] != '\n')
            e++;
        e += e < n; /* the segment keeps its "\n" */
        for (size_t i = s; i < e; i++)
            html &= c[i] != '<';
        cpbuf cur = {0};
        rc = push_all(&cur, c + s, e - s);
        for (int round = 0; round < 16 && !rc; round++) {
            cpbuf u = {0}, f = {0};
            rc = html ? ftfy_unescape(&u, cur.p, cur.n)
                      : push_all(&u, cur.p, cur.n);
            if (!rc)
                rc = fix_chars(&f, u.p, u.n);
            int same = !rc && f.n == cur.n &&
                       (f.n == 0 || !memcmp(f.p, cur.p, f.n * sizeof *f.p));
            free(u.p);
            free(cur.p);
            cur = f;
            if (same)
                break;
        }
        if (!rc)
            rc = push_all(o, cur.p, cur.n);
        free(cur.p);
        s = e;
    }
    return rc;
}

static int py_space(int32_t c)
{
    for (size_t i = 0; i < N(py_spaces); i++)
        if ((uint32_t)c == py_spaces[i])
            return 1;
    return 0;
}

int txt_openclip_clean(const uint8_t *s, size_t n, int lower, txt_buf *out)
{
    cpbuf a = {0}, b = {0}, d = {0};
    txt_buf joined = {0};
    int rc = 0;
    for (size_t i = 0; i < n && !rc;) {
        int32_t c;
        i += (size_t)txt_utf8_decode(s + i, &c);
        rc = push(&a, c);
    }
    if (!rc)
        rc = ftfy_fix(&b, a.p, a.n);
    a.n = 0;
    if (!rc)
        rc = html_unescape(&a, b.p, b.n);
    if (!rc)
        rc = html_unescape(&d, a.p, a.n);
    /* " ".join(text.split()), as UTF-8, then str.lower(). */
    int gap = 0;
    for (size_t i = 0; i < d.n && !rc; i++) {
        if (py_space(d.p[i])) {
            gap = joined.n > 0;
            continue;
        }
        uint8_t u[4];
        utf8proc_ssize_t k = utf8proc_encode_char(d.p[i], u);
        rc = txt_buf_reserve(&joined, (size_t)k + 1);
        if (!rc) {
            if (gap)
                joined.p[joined.n++] = ' ';
            memcpy(joined.p + joined.n, u, (size_t)k);
            joined.n += (size_t)k;
            gap = 0;
        }
    }
    size_t at = out->n;
    if (!rc && !lower)
        rc = txt_buf_reserve(out, joined.n);
    if (!rc && !lower) {
        memcpy(out->p + out->n, joined.p, joined.n);
        out->n += joined.n;
    } else if (!rc) {
        rc = txt_py_lower(joined.p, joined.n, out);
    }
    /* U+0345 (CD 85), which the tokenizer's case-insensitive regex matches
     * in none of its classes, splits words as a space does. */
    size_t w = at;
    for (size_t i = at; !rc && lower && i < out->n; i++) {
        if (out->p[i] == 0xCD && i + 1 < out->n && out->p[i + 1] == 0x85) {
            out->p[w++] = ' ';
            i++;
        } else {
            out->p[w++] = out->p[i];
        }
    }
    if (!rc && lower)
        out->n = w;
    free(a.p), free(b.p), free(d.p);
    txt_buf_free(&joined);
    return rc;
}

void txt_set_openclip_clean(txt_tokenizer *t, txt_openclip mode)
{
    if (t && t->kind == TXT_KIND_CLIP)
        t->openclip_clean = (int)mode;
}
