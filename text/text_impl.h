/*
 * Private declarations of the text module: the tokenizer's layout, the
 * growable buffers the pipeline works in, and the functions the files of
 * text/ share (UTF-8 repair and normalization in normalize.c, the merge
 * table, the word cache and BPE itself in bpe.c, file loading in load.c,
 * the pipeline of CLIP and Gemma in encode.c; for SigLIP, the
 * SentencePiece model in spm.c and its pipeline in siglip.c). Nothing here
 * is API.
 */
#ifndef TEXT_IMPL_H
#define TEXT_IMPL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "text/text.h"

/* FNV-1a, one byte at a time (so that a string's prefixes hash as they
 * grow). */
#define TXT_FNV_INIT 0xCBF29CE484222325ULL
static inline uint64_t txt_fnv_step(uint64_t h, uint8_t b)
{
    return (h ^ b) * 0x100000001B3ULL;
}

/* A growable byte buffer. */
typedef struct {
    uint8_t *p;
    size_t n, cap;
} txt_buf;

/* Makes room for `extra` more bytes; 0 on success, -1 out of memory. */
int txt_buf_reserve(txt_buf *b, size_t extra);
void txt_buf_free(txt_buf *b);

/* An added token: matched in the text before BPE and given its own id.
 * `s` is the content as written, or its normalized form when `normalized`
 * (it is then matched against normalized text). */
typedef struct {
    uint8_t *s;
    size_t n;
    int32_t id;
    int normalized;
    int special;
} txt_added;

/* One slot of the merge table: the pair (left id, right id) packed in
 * `key` (TXT_NO_KEY when empty), its rank in merges.txt and the id of the
 * merged symbol. */
typedef struct {
    uint64_t key;
    uint32_t rank;
    int32_t id;
} txt_merge;

#define TXT_NO_KEY UINT64_MAX

/* The word cache: words of up to TXT_CACHE_WORD bytes and their ids, in
 * shards each guarded by its own mutex, taken with trylock so that a thread
 * never waits (a busy shard is a miss). A shard that fills up is emptied
 * and starts again, which keeps the memory fixed and the common words
 * (seen again soon) cached. */
#define TXT_CACHE_SHARDS 16
#define TXT_CACHE_SLOTS 2048      /* per shard, a power of two */
#define TXT_CACHE_ARENA (96 * 1024)
#define TXT_CACHE_WORD 64

typedef struct {
    pthread_mutex_t mu;
    uint64_t *hash;     /* (slots) hash of each entry, 0 = empty */
    uint32_t *off;      /* (slots) offset of each entry in arena */
    uint8_t *arena;     /* entries: u16 word length, u16 id count, word
                           bytes, ids (int32, unaligned) */
    size_t used, count;
} txt_cache_shard;

/* A SentencePiece model (spm.c). */
typedef struct {
    int n;                     /* pieces */
    uint8_t *arena;            /* their bytes, piece i at off[i], len[i] */
    uint32_t *off, *len;
    float *score;
    uint8_t *type;             /* 1 NORMAL ... 6 BYTE, as in the file */
    void *slots;               /* the prefix and name table */
    size_t mask, max_len;      /* max_len: the longest lattice piece */
    int32_t unk;
    int32_t byte_id[256];      /* with byte_fallback */
    float min_score, max_score;
    int byte_fallback, has_user;
    uint32_t *units;           /* the charsmap's double array, or NULL */
    size_t n_units;
    uint8_t *norm;             /* its replacement strings */
    size_t norm_len;
    int add_dummy_prefix, remove_ws, escape_ws, ws_suffix;
} txt_spm;

/* A piece of an encoding: bytes off..off+len of the normalized text. */
typedef struct {
    uint32_t off, len;
    int32_t id;
} txt_spm_piece;

typedef struct {
    txt_buf norm;              /* the normalized text */
    void *best;                /* (cap_best) the Viterbi's best paths */
    size_t cap_best;
    txt_spm_piece *pieces;
    size_t n_pieces, cap_pieces;
} txt_spm_scratch;

/* A vocabulary entry that is one character (Gemma's BPE starts from
 * them): the code point + 1 (0: empty slot) and its id. */
typedef struct {
    uint32_t key;
    int32_t id;
} txt_char;

/* The first slot to probe for code point + 1 `key` (linear probing). */
static inline size_t txt_char_slot(uint32_t key, size_t mask)
{
    return (size_t)((key * 0x9E3779B1U) >> 7) & mask;
}

#define TXT_MAX_FRAME 8        /* ids a post-processor may put around */

struct txt_tokenizer {
    txt_kind kind;
    int32_t byte_id[256];      /* the byte's symbol, -1 if not in vocab
                                  (Gemma: its "<0xNN>" piece) */
    int32_t byte_eow_id[256];  /* the byte's symbol + "</w>" */
    txt_merge *merges;         /* open addressing, mask + 1 slots */
    size_t merge_mask;
    txt_added *added;
    int n_added;
    int n_added_raw;           /* how many are matched on raw text */
    uint8_t raw_first[256];    /* first bytes of the raw added tokens */
    uint8_t norm_first[256];   /* first bytes of the normalized ones */
    int32_t bos, eos, pad, unk;
    int vocab_size, max_length;
    int pad_left;              /* padding_side "left" */
    /* What the post-processor puts around the text's ids (CLIP: bos and
     * eos; Gemma: tokenizer.json's template, eos for SigLIP 2). */
    int32_t prefix[TXT_MAX_FRAME], suffix[TXT_MAX_FRAME];
    int n_prefix, n_suffix;
    /* Gemma's byte-fallback BPE (kind TXT_KIND_GEMMA) */
    txt_char *chars;           /* mask + 1 slots */
    size_t char_mask;
    int32_t bpe_unk;           /* the BPE model's unknown token, or -1 */
    int byte_fallback, fuse_unk;
    /* SigLIP's SentencePiece tokenizer (kind TXT_KIND_SIGLIP) */
    txt_spm spm;
    uint8_t *unk_str;          /* the unk token's text, put before a chunk */
    size_t unk_n;
    int unk_pieces;            /* how many pieces unk_str alone gives */
    int lower;                 /* do_lower_case; Gemma: Lowercase first */
    int openclip_clean;        /* CLIP: a txt_openclip mode */
    pcre2_code *re;            /* the word-splitting regex */
    txt_cache_shard cache[TXT_CACHE_SHARDS];
};

/* ---- normalize.c ---- */

/* Length of the longest valid UTF-8 prefix of s[0..n). */
size_t txt_utf8_valid_prefix(const uint8_t *s, size_t n);

/* Appends s[0..n) to `out` with each maximal ill-formed subsequence
 * replaced by U+FFFD (EF BF BD), as Python's decode(..., "replace").
 * 0, or -1 out of memory. */
int txt_utf8_repair(const uint8_t *s, size_t n, txt_buf *out);

/* Scratch memory of the normalizer (a code point buffer). */
typedef struct {
    int32_t *cp;
    size_t cap;
} txt_norm_scratch;

void txt_norm_scratch_free(txt_norm_scratch *sc);

/* Appends the normalization of the valid UTF-8 s[0..n) to `out`: NFC as
 * the reference's crate does it, White_Space runs to one space, then Rust's
 * lowercase. 0, or -1 out of memory or a utf8proc failure. */
int txt_normalize(const uint8_t *s, size_t n, txt_norm_scratch *sc,
                  txt_buf *out);

/* Appends Gemma's normalization of the valid UTF-8 s[0..n) to `out`: with
 * `lower`, Rust's lowercase (Siglip2Tokenizer's Lowercase), then every
 * space made U+2581 "▁". 0, or -1 out of memory. */
int txt_gemma_normalize(const uint8_t *s, size_t n, int lower, txt_buf *out);

/* Decodes the well-formed UTF-8 sequence at s; returns its length. */
int txt_utf8_decode(const uint8_t *s, int32_t *cp);

/* Code point ranges, sorted; txt_in_ranges: whether c is in one. */
typedef struct {
    int32_t lo, hi;
} txt_range;
int txt_in_ranges(const txt_range *r, size_t n, int32_t c);

/* ---- bpe.c ---- */

/* Inserts a merge (later duplicates win, as in the reference); 0 or -1 out
 * of memory. The table must have been sized by txt_merges_alloc. */
int txt_merges_alloc(txt_tokenizer *t, size_t n_merges);
void txt_merges_put(txt_tokenizer *t, int32_t a, int32_t b, uint32_t rank,
                    int32_t id);

/* Scratch memory of one BPE run. */
typedef struct {
    int32_t *sym;       /* (n) symbol ids */
    int32_t *prev, *next;
    uint8_t *alive;
    void *heap;         /* (cap) pending merges */
    size_t cap, heap_cap;
    int32_t *ids;       /* a word's resulting ids */
    size_t ids_cap;
} txt_bpe_scratch;

void txt_bpe_scratch_free(txt_bpe_scratch *sc);

/* BPE of one word (its UTF-8 bytes), which starts as CLIP's byte symbols
 * or, for Gemma, as its characters with byte fallback. On success *ids
 * points into the scratch (valid until the next call) and the count is
 * returned; -1 out of memory. Uses and fills the word cache. */
long txt_bpe_word(txt_tokenizer *t, const uint8_t *w, size_t n,
                  txt_bpe_scratch *sc, const int32_t **ids);

int txt_cache_init(txt_tokenizer *t);
void txt_cache_free(txt_tokenizer *t);

/* ---- encode.c ---- */

/* Walks s[0..n), cutting out the added tokens lo..hi-1 (`first` marks
 * their first bytes) where they occur, leftmost and then longest first:
 * each stretch between them goes to `text`, each token to `token`. A
 * nonzero return of either ends the walk and is returned; else 0. */
int txt_split_added(const txt_tokenizer *t, int lo, int hi,
                    const uint8_t *first, const uint8_t *s, size_t n,
                    int (*text)(void *ctx, const uint8_t *s, size_t n),
                    int (*token)(void *ctx, const txt_added *a), void *ctx);

/* ---- load.c ---- */

/* Writes a message into err (if not NULL) and returns st. */
txt_status txt_fail(char *err, size_t errlen, txt_status st, const char *fmt,
                    ...) __attribute__((format(printf, 4, 5)));

/* ---- spm.c ---- */

/* Reads the SentencePiece model in p[0..n) (`path` names it in messages). */
txt_status txt_spm_load(txt_spm *m, const uint8_t *p, size_t n,
                        const char *path, char *err, size_t errlen);
void txt_spm_free(txt_spm *m);

/* The id of the piece named s[0..n) (any type), or -1. */
int32_t txt_spm_piece_id(const txt_spm *m, const uint8_t *s, size_t n);

/* Appends the model's normalization of the valid UTF-8 s[0..n) to out. */
int txt_spm_normalize(const txt_spm *m, const uint8_t *s, size_t n,
                      txt_buf *out);

/* Encodes valid UTF-8 as SentencePieceProcessor::Encode does: on success
 * sc->pieces holds the pieces (offsets into sc->norm) and their count is
 * returned; -1 out of memory. */
long txt_spm_encode(const txt_spm *m, const uint8_t *s, size_t n,
                    txt_spm_scratch *sc);
void txt_spm_scratch_free(txt_spm_scratch *sc);

/* ---- siglip.c ---- */

/* SiglipTokenizer's encoding (see siglip.c); same contract as txt_encode. */
int txt_siglip_encode(txt_tokenizer *t, const uint8_t *s, size_t n,
                      int32_t *ids, int max_ids);

/* Python's str.lower() of valid UTF-8, appended to out. */
int txt_py_lower(const uint8_t *s, size_t n, txt_buf *out);

/* ---- clean.c ---- */

/* open_clip's cleaning of valid UTF-8 (see clean.c), lowercased or not
 * (its SimpleTokenizer's, its HFTokenizer's), appended to out. 0, or -1
 * out of memory. */
int txt_openclip_clean(const uint8_t *s, size_t n, int lower, txt_buf *out);

#endif
