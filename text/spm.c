/*
 * SentencePiece models (`spiece.model`) as the sentencepiece library
 * (0.2.x) encodes with them: the model file, its normalizer and the
 * Unigram segmentation. This is our own code rather than a library because
 * Debian's libsentencepiece is C++ and the ids must be the reference's to
 * the last tie: every step below follows the library's source, and
 * tests/check_text.c compares the result with the library's on thousands
 * of strings and on every code point.
 *
 * The file is a protobuf ModelProto, of which we read:
 *   1 pieces (repeated SentencePiece: 1 piece string, 2 score float,
 *     3 type: 1 NORMAL, 2 UNKNOWN, 3 CONTROL, 4 USER_DEFINED, 5 UNUSED,
 *     6 BYTE; NORMAL when absent);
 *   2 trainer_spec: 3 model_type (1 UNIGRAM, the default; BPE, WORD and
 *     CHAR are refused), 24 treat_whitespace_as_suffix, 35 byte_fallback;
 *   3 normalizer_spec: 2 precompiled_charsmap, 3 add_dummy_prefix,
 *     4 remove_extra_whitespaces, 5 escape_whitespaces (all three true
 *     when absent).
 * Everything else (the trainer's other settings, the denormalizer, ...) is
 * skipped. The precompiled charsmap is the normalization rule (nmt_nfkc for
 * SigLIP: NFKC plus a few rules) compiled into a darts-clone double-array
 * trie over the UTF-8 input: a little-endian u32 byte count, that many
 * bytes of 32-bit units, then the replacement strings, each ended by NUL.
 * The lookup below is darts-clone's commonPrefixSearch, unit layout and
 * all, and the longest match wins, as in the library's normalizer.
 */
#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/text_impl.h"

enum { T_NORMAL = 1, T_UNKNOWN, T_CONTROL, T_USER, T_UNUSED, T_BYTE };

/* ---- protobuf ---- */

typedef struct {
    const uint8_t *p, *end;
} pb;

static int pb_varint(pb *b, uint64_t *v)
{
    uint64_t r = 0;
    for (int sh = 0; sh < 64 && b->p < b->end; sh += 7) {
        uint8_t c = *b->p++;
        r |= (uint64_t)(c & 0x7F) << sh;
        if (!(c & 0x80)) {
            *v = r;
            return 0;
        }
    }
    return -1;
}

/* One field: its number, and its value as a varint (*v), a 32-bit word
 * (*v) or bytes (*data, *len). 0, or -1 when the bytes are malformed or
 * use the deprecated groups. */
static int pb_next(pb *b, uint32_t *field, uint64_t *v, const uint8_t **data,
                   size_t *len)
{
    uint64_t key;
    if (pb_varint(b, &key) || key >> 32)
        return -1;
    *field = (uint32_t)(key >> 3);
    switch (key & 7) {
    case 0:
        return pb_varint(b, v);
    case 1:
        if (b->end - b->p < 8)
            return -1;
        b->p += 8;
        *v = 0;
        return 0;
    case 2:
        if (pb_varint(b, v) || *v > (uint64_t)(b->end - b->p))
            return -1;
        *data = b->p;
        *len = (size_t)*v;
        b->p += *len;
        return 0;
    case 5:
        if (b->end - b->p < 4)
            return -1;
        *v = (uint64_t)b->p[0] | (uint64_t)b->p[1] << 8 |
             (uint64_t)b->p[2] << 16 | (uint64_t)b->p[3] << 24;
        b->p += 4;
        return 0;
    default:
        return -1;
    }
}

/* ---- the piece table ----
 * One hash table holds every prefix of every piece the segmentation may
 * use (NORMAL, USER_DEFINED, UNUSED: the library's trie) and every piece
 * by name. A prefix's entry says which piece it is in the trie (lat, or -1
 * for a bare prefix) and which piece it names (any, or -1), so walking a
 * string's prefixes stops where the trie's traversal would. */

typedef struct {
    uint64_t h;     /* 0: empty */
    uint32_t off;   /* the key is arena[off .. off + len) */
    uint32_t len;
    int32_t lat, any;
} spm_slot;

static uint64_t key_hash(uint64_t h)
{
    return h ? h : 1;
}

static spm_slot *slot_find(const txt_spm *m, uint64_t h, const uint8_t *s,
                           size_t n)
{
    h = key_hash(h);
    for (size_t i = h & m->mask;; i = (i + 1) & m->mask) {
        spm_slot *e = &((spm_slot *)m->slots)[i];
        if (!e->h)
            return e;
        if (e->h == h && e->len == n && !memcmp(m->arena + e->off, s, n))
            return e;
    }
}

static void slot_put(txt_spm *m, uint64_t h, uint32_t off, uint32_t len,
                     int32_t lat, int32_t any)
{
    spm_slot *e = slot_find(m, h, m->arena + off, len);
    if (!e->h)
        *e = (spm_slot){key_hash(h), off, len, -1, -1};
    if (lat >= 0)
        e->lat = lat;
    if (any >= 0)
        e->any = any;
}

int32_t txt_spm_piece_id(const txt_spm *m, const uint8_t *s, size_t n)
{
    uint64_t h = TXT_FNV_INIT;
    for (size_t i = 0; i < n; i++)
        h = txt_fnv_step(h, s[i]);
    const spm_slot *e = slot_find(m, h, s, n);
    return e->h ? e->any : -1;
}

static int in_lattice(int type)
{
    return type == T_NORMAL || type == T_USER || type == T_UNUSED;
}

/* ---- loading ---- */

static txt_status bad(char *err, size_t errlen, const char *path,
                      const char *what)
{
    return txt_fail(err, errlen, TXT_E_FORMAT, "%s: %s", path, what);
}

static txt_status read_pieces(txt_spm *m, const uint8_t *p, size_t n,
                              const char *path, char *err, size_t errlen)
{
    /* First count the pieces and their bytes. */
    pb b = {p, p + n};
    size_t count = 0, bytes = 0;
    while (b.p < b.end) {
        uint32_t f;
        uint64_t v;
        const uint8_t *d;
        size_t len;
        if (pb_next(&b, &f, &v, &d, &len))
            return bad(err, errlen, path, "not a SentencePiece model");
        if (f == 1) {
            count++;
            bytes += len;
        }
    }
    if (count == 0 || count >= INT32_MAX / 2)
        return bad(err, errlen, path, "no pieces");
    m->n = (int)count;
    m->arena = malloc(bytes + 1);
    m->off = malloc(count * sizeof *m->off);
    m->len = malloc(count * sizeof *m->len);
    m->score = malloc(count * sizeof *m->score);
    m->type = malloc(count);
    if (!m->arena || !m->off || !m->len || !m->score || !m->type)
        return txt_fail(err, errlen, TXT_E_NOMEM, "out of memory");

    size_t used = 0, k = 0;
    b = (pb){p, p + n};
    while (b.p < b.end) {
        uint32_t f;
        uint64_t v;
        const uint8_t *d;
        size_t len;
        pb_next(&b, &f, &v, &d, &len);
        if (f != 1)
            continue;
        pb s = {d, d + len};
        const uint8_t *str = NULL;
        size_t sn = 0;
        uint32_t bits = 0;
        int type = T_NORMAL;
        while (s.p < s.end) {
            uint32_t g;
            const uint8_t *e = NULL;
            size_t el = 0;
            if (pb_next(&s, &g, &v, &e, &el))
                return bad(err, errlen, path, "a malformed piece");
            if (g == 1 && e)
                str = e, sn = el;
            else if (g == 2)
                bits = (uint32_t)v;
            else if (g == 3)
                type = (int)v;
        }
        /* The library refuses empty pieces and pieces with NUL. */
        if (!str || sn == 0 || memchr(str, 0, sn) || sn > UINT32_MAX / 2)
            return bad(err, errlen, path, "an empty piece or one with NUL");
        if (type < T_NORMAL || type > T_BYTE)
            return bad(err, errlen, path, "a piece of unknown type");
        memcpy(m->arena + used, str, sn);
        m->off[k] = (uint32_t)used;
        m->len[k] = (uint32_t)sn;
        memcpy(&m->score[k], &bits, sizeof bits);
        m->type[k] = (uint8_t)type;
        used += sn;
        k++;
    }
    return TXT_OK;
}

static txt_status build_table(txt_spm *m, const char *path, char *err,
                              size_t errlen)
{
    size_t entries = 0;
    for (int i = 0; i < m->n; i++)
        entries += in_lattice(m->type[i]) ? m->len[i] : 1;
    size_t slots = 16;
    while (slots < 2 * entries)
        slots *= 2;
    m->slots = calloc(slots, sizeof(spm_slot));
    if (!m->slots)
        return txt_fail(err, errlen, TXT_E_NOMEM, "out of memory");
    m->mask = slots - 1;
    m->unk = -1;
    m->min_score = FLT_MAX;
    m->max_score = FLT_MIN; /* as the library starts it: not -FLT_MAX */
    for (int i = 0; i < 256; i++)
        m->byte_id[i] = -1;
    for (int i = 0; i < m->n; i++) {
        const uint8_t *s = m->arena + m->off[i];
        uint32_t n = m->len[i];
        uint64_t h = TXT_FNV_INIT;
        for (uint32_t j = 0; j < n; j++)
            h = txt_fnv_step(h, s[j]);
        if (txt_spm_piece_id(m, s, n) >= 0)
            return txt_fail(err, errlen, TXT_E_FORMAT,
                            "%s: the piece \"%.*s\" is defined twice", path,
                            (int)(n < 40 ? n : 40), (const char *)s);
        if (in_lattice(m->type[i])) {
            h = TXT_FNV_INIT;
            for (uint32_t j = 0; j < n; j++) {
                h = txt_fnv_step(h, s[j]);
                slot_put(m, h, m->off[i], j + 1, j + 1 == n ? i : -1,
                         j + 1 == n ? i : -1);
            }
            if (n > m->max_len)
                m->max_len = n;
        } else
            slot_put(m, h, m->off[i], n, -1, i);
        if (m->type[i] == T_NORMAL) {
            if (m->score[i] < m->min_score)
                m->min_score = m->score[i];
            if (m->score[i] > m->max_score)
                m->max_score = m->score[i];
        }
        if (m->type[i] == T_UNKNOWN) {
            if (m->unk >= 0)
                return bad(err, errlen, path, "two unknown pieces");
            m->unk = i;
        }
        if (m->type[i] == T_USER)
            m->has_user = 1;
        if (m->type[i] == T_BYTE) {
            unsigned v;
            char tail;
            if (n != 6 || sscanf((const char *)s, "<0x%2X%c", &v, &tail) != 2 ||
                tail != '>' || s[3] == '+' || s[3] == '-')
                return bad(err, errlen, path, "a byte piece that is not "
                           "<0xXX>");
            m->byte_id[v] = i;
        }
    }
    if (m->unk < 0)
        return bad(err, errlen, path, "no unknown piece");
    if (m->byte_fallback)
        for (int i = 0; i < 256; i++)
            if (m->byte_id[i] < 0)
                return bad(err, errlen, path,
                           "byte_fallback without the 256 byte pieces");
    return TXT_OK;
}

static txt_status read_charsmap(txt_spm *m, const uint8_t *d, size_t n,
                                const char *path, char *err, size_t errlen)
{
    if (n == 0)
        return TXT_OK; /* no normalization rule: identity */
    if (n <= 4)
        return bad(err, errlen, path, "a broken precompiled charsmap");
    uint32_t tn = (uint32_t)d[0] | (uint32_t)d[1] << 8 |
                  (uint32_t)d[2] << 16 | (uint32_t)d[3] << 24;
    if (tn > n - 4 || tn % 4 || tn == 0)
        return bad(err, errlen, path, "a broken precompiled charsmap");
    m->n_units = tn / 4;
    m->units = malloc(tn);
    m->norm_len = n - 4 - tn;
    m->norm = malloc(m->norm_len + 1);
    if (!m->units || !m->norm)
        return txt_fail(err, errlen, TXT_E_NOMEM, "out of memory");
    for (size_t i = 0; i < m->n_units; i++) {
        const uint8_t *u = d + 4 + 4 * i;
        m->units[i] = (uint32_t)u[0] | (uint32_t)u[1] << 8 |
                      (uint32_t)u[2] << 16 | (uint32_t)u[3] << 24;
    }
    memcpy(m->norm, d + 4 + tn, m->norm_len);
    m->norm[m->norm_len] = 0; /* a last string without its NUL stays ended */
    return TXT_OK;
}

txt_status txt_spm_load(txt_spm *m, const uint8_t *p, size_t n,
                        const char *path, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    m->add_dummy_prefix = m->remove_ws = m->escape_ws = 1;
    int model_type = 1;
    const uint8_t *pieces = p, *charsmap = NULL;
    size_t charsmap_n = 0;
    pb b = {p, p + n};
    while (b.p < b.end) {
        uint32_t f;
        uint64_t v;
        const uint8_t *d = NULL;
        size_t len = 0;
        if (pb_next(&b, &f, &v, &d, &len))
            return bad(err, errlen, path, "not a SentencePiece model");
        if ((f == 2 || f == 3) && d) {
            pb s = {d, d + len};
            while (s.p < s.end) {
                uint32_t g;
                const uint8_t *e = NULL;
                size_t el = 0;
                if (pb_next(&s, &g, &v, &e, &el))
                    return bad(err, errlen, path, "not a SentencePiece model");
                if (f == 2 && g == 3)
                    model_type = (int)v;
                else if (f == 2 && g == 24)
                    m->ws_suffix = v != 0;
                else if (f == 2 && g == 35)
                    m->byte_fallback = v != 0;
                else if (f == 3 && g == 2 && e)
                    charsmap = e, charsmap_n = el;
                else if (f == 3 && g == 3)
                    m->add_dummy_prefix = v != 0;
                else if (f == 3 && g == 4)
                    m->remove_ws = v != 0;
                else if (f == 3 && g == 5)
                    m->escape_ws = v != 0;
            }
        }
    }
    if (model_type != 1)
        return txt_fail(err, errlen, TXT_E_UNSUPPORTED,
                        "%s: a SentencePiece %s model; only Unigram models "
                        "are supported",
                        path, model_type == 2 ? "BPE" : model_type == 3
                                                            ? "word"
                                                            : model_type == 4
                                                                  ? "char"
                                                                  : "unknown");
    txt_status st = read_pieces(m, pieces, n, path, err, errlen);
    if (!st)
        st = build_table(m, path, err, errlen);
    if (!st)
        st = read_charsmap(m, charsmap, charsmap_n, path, err, errlen);
    return st;
}

void txt_spm_free(txt_spm *m)
{
    free(m->arena);
    free(m->off);
    free(m->len);
    free(m->score);
    free(m->type);
    free(m->slots);
    free(m->units);
    free(m->norm);
    memset(m, 0, sizeof *m);
}

/* ---- the normalizer ---- */

/* darts-clone's unit accessors. */
static int unit_has_leaf(uint32_t u) { return (u >> 8) & 1; }
static uint32_t unit_value(uint32_t u) { return u & ((1U << 31) - 1); }
static uint32_t unit_label(uint32_t u) { return u & ((1U << 31) | 0xFF); }
static uint32_t unit_offset(uint32_t u)
{
    return (u >> 10) << ((u & (1U << 9)) >> 6);
}

/* The longest key of the charsmap that is a prefix of s[0..n): its length
 * (0 if none) and, in *value, the offset of its replacement. */
static size_t charsmap_longest(const txt_spm *m, const uint8_t *s, size_t n,
                               uint32_t *value)
{
    size_t best = 0;
    uint32_t id = unit_offset(m->units[0]);
    for (size_t i = 0; i < n; i++) {
        id ^= s[i];
        if (id >= m->n_units)
            return best;
        uint32_t u = m->units[id];
        if (unit_label(u) != s[i])
            return best;
        id ^= unit_offset(u);
        if (unit_has_leaf(u)) {
            if (id >= m->n_units)
                return best;
            best = i + 1;
            *value = unit_value(m->units[id]);
        }
    }
    return best;
}

/* The library's one-character length, from the lead byte alone. */
static size_t one_char_len(uint8_t c)
{
    return (size_t)"\1\1\1\1\1\1\1\1\1\1\1\1\2\2\3\4"[c >> 4];
}

/* The longest user-defined piece at the start of s[0..n), or 0. */
static size_t user_prefix(const txt_spm *m, const uint8_t *s, size_t n)
{
    size_t best = 0;
    uint64_t h = TXT_FNV_INIT;
    for (size_t l = 1; l <= n && l <= m->max_len; l++) {
        h = txt_fnv_step(h, s[l - 1]);
        const spm_slot *e = slot_find(m, h, s, l);
        if (!e->h)
            break;
        if (e->lat >= 0 && m->type[e->lat] == T_USER)
            best = l;
    }
    return best;
}

/* Normalizer::NormalizePrefix: the normalized form of the start of s and
 * how many bytes it consumes. */
static const uint8_t *norm_prefix(const txt_spm *m, const uint8_t *s,
                                  size_t n, size_t *out_n, size_t *consumed)
{
    size_t l = m->has_user ? user_prefix(m, s, n) : 0;
    if (l) {
        *out_n = *consumed = l;
        return s;
    }
    uint32_t v = 0;
    if (m->units && (l = charsmap_longest(m, s, n, &v)) > 0 &&
        v < m->norm_len + 1) {
        const uint8_t *r = m->norm + v;
        *out_n = strlen((const char *)r);
        *consumed = l;
        return r;
    }
    /* Copied as it is: the input here is always valid UTF-8. */
    l = one_char_len(s[0]);
    *out_n = *consumed = l < n ? l : n;
    return s;
}

static const uint8_t SPACE_SYM[3] = {0xE2, 0x96, 0x81}; /* U+2581 */

int txt_spm_normalize(const txt_spm *m, const uint8_t *s, size_t n,
                      txt_buf *out)
{
    size_t pos = 0, rn, c;
    if (m->remove_ws)
        while (pos < n) {
            const uint8_t *r = norm_prefix(m, s + pos, n - pos, &rn, &c);
            if (!(rn == 1 && r[0] == ' '))
                break;
            pos += c;
        }
    if (pos == n)
        return 0;
    size_t start = out->n;
    const uint8_t *sym = m->escape_ws ? SPACE_SYM : (const uint8_t *)" ";
    size_t sym_n = m->escape_ws ? 3 : 1;
    if (txt_buf_reserve(out, 3))
        return -1;
    if (!m->ws_suffix && m->add_dummy_prefix) {
        memcpy(out->p + out->n, sym, sym_n);
        out->n += sym_n;
    }
    int prev_space = m->remove_ws;
    while (pos < n) {
        const uint8_t *r = norm_prefix(m, s + pos, n - pos, &rn, &c);
        while (prev_space && rn && r[0] == ' ')
            r++, rn--;
        if (rn) {
            if (txt_buf_reserve(out, 3 * rn))
                return -1;
            for (size_t i = 0; i < rn; i++)
                if (m->escape_ws && r[i] == ' ') {
                    memcpy(out->p + out->n, SPACE_SYM, 3);
                    out->n += 3;
                } else
                    out->p[out->n++] = r[i];
            prev_space = r[rn - 1] == ' ';
        }
        pos += c;
        if (!m->remove_ws)
            prev_space = 0;
    }
    if (m->remove_ws)
        while (out->n - start >= sym_n &&
               !memcmp(out->p + out->n - sym_n, sym, sym_n))
            out->n -= sym_n;
    if (m->ws_suffix && m->add_dummy_prefix) {
        if (txt_buf_reserve(out, 3))
            return -1;
        memcpy(out->p + out->n, sym, sym_n);
        out->n += sym_n;
    }
    return 0;
}

/* ---- the Unigram segmentation ---- */

void txt_spm_scratch_free(txt_spm_scratch *sc)
{
    txt_buf_free(&sc->norm);
    free(sc->best);
    free(sc->pieces);
    memset(sc, 0, sizeof *sc);
}

typedef struct {
    int32_t id;     /* -1: not reached yet */
    int32_t start;
    float score;
} best_node;

static int pieces_push(txt_spm_scratch *sc, uint32_t off, uint32_t len,
                       int32_t id)
{
    if (sc->n_pieces == sc->cap_pieces) {
        size_t cap = sc->cap_pieces ? 2 * sc->cap_pieces : 64;
        txt_spm_piece *p = realloc(sc->pieces, cap * sizeof *p);
        if (!p)
            return -1;
        sc->pieces = p;
        sc->cap_pieces = cap;
    }
    sc->pieces[sc->n_pieces++] = (txt_spm_piece){off, len, id};
    return 0;
}

/* Model::EncodeOptimized: the best path to each byte position, found left
 * to right. Its sums are float, as the library's results show where two
 * paths tie to the last float bit (a user-defined piece's bonus,
 * length * max_score - 0.1, is worked in double and then rounded); among
 * equal paths to a position the first found wins: the one whose last piece
 * starts earliest. */
static int viterbi(const txt_spm *m, const uint8_t *s, size_t n,
                   txt_spm_scratch *sc)
{
    if (n + 1 > sc->cap_best) {
        best_node *b = realloc(sc->best, (n + 1) * sizeof *b);
        if (!b)
            return -1;
        sc->best = b;
        sc->cap_best = n + 1;
    }
    best_node *best = sc->best;
    for (size_t i = 0; i <= n; i++)
        best[i] = (best_node){-1, -1, 0.0f};
    const float unk_score = m->min_score - 10.0f;
    for (size_t at = 0; at < n;) {
        const float here = best[at].score;
        size_t mblen = one_char_len(s[at]);
        if (mblen > n - at)
            mblen = n - at;
        int single = 0;
        uint64_t h = TXT_FNV_INIT;
        for (size_t l = 1; at + l <= n && l <= m->max_len; l++) {
            h = txt_fnv_step(h, s[at + l - 1]);
            const spm_slot *e = slot_find(m, h, s + at, l);
            if (!e->h)
                break;
            int32_t id = e->lat;
            if (id < 0 || m->type[id] == T_UNUSED)
                continue;
            float score = m->type[id] == T_USER
                              ? (float)((double)((float)l * m->max_score) -
                                        0.1)
                              : m->score[id];
            float cand = score + here;
            best_node *t = &best[at + l];
            if (t->start < 0 || cand > t->score) {
                t->score = cand;
                t->start = (int32_t)at;
                t->id = id;
            }
            if (l == mblen)
                single = 1;
        }
        if (!single) {
            best_node *t = &best[at + mblen];
            float cand = unk_score + here;
            if (t->start < 0 || cand > t->score) {
                t->score = cand;
                t->start = (int32_t)at;
                t->id = m->unk;
            }
        }
        at += mblen;
    }
    /* Backtrack, then reverse. */
    sc->n_pieces = 0;
    for (size_t end = n; end > 0; end = (size_t)best[end].start)
        if (pieces_push(sc, (uint32_t)best[end].start,
                        (uint32_t)(end - (size_t)best[end].start),
                        best[end].id))
            return -1;
    for (size_t i = 0, j = sc->n_pieces; i + 1 < j; i++, j--) {
        txt_spm_piece tmp = sc->pieces[i];
        sc->pieces[i] = sc->pieces[j - 1];
        sc->pieces[j - 1] = tmp;
    }
    return 0;
}

long txt_spm_encode(const txt_spm *m, const uint8_t *s, size_t n,
                    txt_spm_scratch *sc)
{
    sc->norm.n = 0;
    sc->n_pieces = 0;
    if (txt_spm_normalize(m, s, n, &sc->norm))
        return -1;
    if (sc->norm.n == 0)
        return 0;
    if (sc->norm.n > INT32_MAX)
        return -1;
    if (viterbi(m, sc->norm.p, sc->norm.n, sc))
        return -1;
    /* Unknown pieces: split into byte pieces with byte fallback, else a
     * run of them merged into one (SentencePieceProcessor::
     * PopulateSentencePieceText). */
    size_t k = 0, np = sc->n_pieces;
    if (m->byte_fallback) {
        size_t extra = 0;
        for (size_t i = 0; i < np; i++)
            if (sc->pieces[i].id == m->unk)
                extra += sc->pieces[i].len - 1;
        for (size_t i = 0; i < extra; i++)
            if (pieces_push(sc, 0, 0, 0))
                return -1;
        for (size_t i = np; i-- > 0;) {
            txt_spm_piece p = sc->pieces[i];
            size_t dst = i + extra;
            if (p.id != m->unk) {
                sc->pieces[dst] = p;
                continue;
            }
            for (uint32_t j = p.len; j-- > 0;) {
                sc->pieces[dst - (p.len - 1 - j)] = (txt_spm_piece){
                    p.off + j, 1, m->byte_id[sc->norm.p[p.off + j]]};
            }
            extra -= p.len - 1;
        }
        return (long)sc->n_pieces;
    }
    for (size_t i = 0; i < np; i++) {
        txt_spm_piece p = sc->pieces[i];
        if (k && p.id == m->unk && sc->pieces[k - 1].id == m->unk)
            sc->pieces[k - 1].len += p.len;
        else
            sc->pieces[k++] = p;
    }
    sc->n_pieces = k;
    return (long)k;
}
