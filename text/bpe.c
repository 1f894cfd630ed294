/*
 * Byte-pair encoding of one word, as the `tokenizers` BPE model does it
 * (models/bpe/model.rs merge_word, then word.rs merge_all). The word starts
 * as CLIP's one symbol per byte, the last one carrying the "</w>" suffix,
 * or as Gemma's one symbol per character (see gemma_symbols); a priority
 * queue holds every adjacent pair that has a merge, lowest rank first and
 * leftmost first among equal ranks; a popped pair is merged unless it went
 * stale, and the pairs it forms with its neighbours are queued. The same
 * algorithm, stale check included, gives the same symbols in every case,
 * and runs in O(n log n) so that a megabyte-long word (a Gemma text with
 * no added token in it) is no trouble. This file also owns the merge table
 * and the cache of recent words.
 */
#include <stdlib.h>
#include <string.h>

#include "text/text_impl.h"

/* ---- the merge table ---- */

static size_t pair_slot(uint64_t key, size_t mask)
{
    uint64_t h = key * 0x9E3779B97F4A7C15ULL;
    return (size_t)(h ^ (h >> 31)) & mask;
}

static uint64_t pair_key(int32_t a, int32_t b)
{
    return (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
}

int txt_merges_alloc(txt_tokenizer *t, size_t n_merges)
{
    size_t slots = 16;
    while (slots < 2 * n_merges)
        slots *= 2;
    t->merges = malloc(slots * sizeof *t->merges);
    if (!t->merges)
        return -1;
    for (size_t i = 0; i < slots; i++)
        t->merges[i].key = TXT_NO_KEY;
    t->merge_mask = slots - 1;
    return 0;
}

void txt_merges_put(txt_tokenizer *t, int32_t a, int32_t b, uint32_t rank,
                    int32_t id)
{
    uint64_t key = pair_key(a, b);
    size_t i = pair_slot(key, t->merge_mask);
    while (t->merges[i].key != TXT_NO_KEY && t->merges[i].key != key)
        i = (i + 1) & t->merge_mask;
    t->merges[i].key = key;
    t->merges[i].rank = rank;
    t->merges[i].id = id;
}

static const txt_merge *merge_get(const txt_tokenizer *t, int32_t a,
                                  int32_t b)
{
    uint64_t key = pair_key(a, b);
    size_t i = pair_slot(key, t->merge_mask);
    for (;;) {
        const txt_merge *m = &t->merges[i];
        if (m->key == key)
            return m;
        if (m->key == TXT_NO_KEY)
            return NULL;
        i = (i + 1) & t->merge_mask;
    }
}

/* ---- the word cache ---- */

static uint64_t word_hash(const uint8_t *w, size_t n)
{
    uint64_t h = 0xCBF29CE484222325ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ w[i]) * 0x100000001B3ULL;
    return h | 1;  /* 0 marks an empty slot */
}

int txt_cache_init(txt_tokenizer *t)
{
    for (int s = 0; s < TXT_CACHE_SHARDS; s++) {
        txt_cache_shard *sh = &t->cache[s];
        sh->hash = calloc(TXT_CACHE_SLOTS, sizeof *sh->hash);
        sh->off = malloc(TXT_CACHE_SLOTS * sizeof *sh->off);
        sh->arena = malloc(TXT_CACHE_ARENA);
        if (!sh->hash || !sh->off || !sh->arena ||
            pthread_mutex_init(&sh->mu, NULL)) {
            free(sh->hash);
            free(sh->off);
            free(sh->arena);
            sh->hash = NULL;
            return -1;
        }
    }
    return 0;
}

void txt_cache_free(txt_tokenizer *t)
{
    for (int s = 0; s < TXT_CACHE_SHARDS; s++) {
        txt_cache_shard *sh = &t->cache[s];
        if (!sh->hash)
            continue;
        pthread_mutex_destroy(&sh->mu);
        free(sh->hash);
        free(sh->off);
        free(sh->arena);
        sh->hash = NULL;
    }
}

static txt_cache_shard *shard_of(txt_tokenizer *t, uint64_t h)
{
    return &t->cache[h >> 60 & (TXT_CACHE_SHARDS - 1)];
}

/* Copies the cached ids of w into out (room for n ids, which no word's
 * BPE exceeds); returns their count, or -1 when w is not cached. */
static long cache_get(txt_tokenizer *t, uint64_t h, const uint8_t *w,
                      size_t n, int32_t *out)
{
    txt_cache_shard *sh = shard_of(t, h);
    long found = -1;
    /* A busy shard counts as a miss: redoing a short word's BPE costs
     * about what waiting would. */
    if (pthread_mutex_trylock(&sh->mu))
        return -1;
    for (size_t i = h & (TXT_CACHE_SLOTS - 1); sh->hash[i];
         i = (i + 1) & (TXT_CACHE_SLOTS - 1)) {
        if (sh->hash[i] != h)
            continue;
        const uint8_t *e = sh->arena + sh->off[i];
        uint16_t wl, ni;
        memcpy(&wl, e, 2);
        memcpy(&ni, e + 2, 2);
        if (wl == n && !memcmp(e + 4, w, n)) {
            memcpy(out, e + 4 + n, ni * sizeof *out);
            found = ni;
            break;
        }
    }
    pthread_mutex_unlock(&sh->mu);
    return found;
}

static void cache_put(txt_tokenizer *t, uint64_t h, const uint8_t *w,
                      size_t n, const int32_t *ids, size_t ni)
{
    txt_cache_shard *sh = shard_of(t, h);
    size_t need = 4 + n + ni * sizeof *ids;
    if (pthread_mutex_trylock(&sh->mu))
        return;  /* busy: leave this word uncached */
    if (sh->count + 1 > TXT_CACHE_SLOTS * 3 / 4 ||
        sh->used + need > TXT_CACHE_ARENA) {
        memset(sh->hash, 0, TXT_CACHE_SLOTS * sizeof *sh->hash);
        sh->used = sh->count = 0;
    }
    size_t i = h & (TXT_CACHE_SLOTS - 1);
    for (; sh->hash[i]; i = (i + 1) & (TXT_CACHE_SLOTS - 1)) {
        const uint8_t *e = sh->arena + sh->off[i];
        uint16_t wl;
        memcpy(&wl, e, 2);
        if (sh->hash[i] == h && wl == n && !memcmp(e + 4, w, n))
            goto done;  /* another thread was first */
    }
    uint8_t *e = sh->arena + sh->used;
    uint16_t wl = (uint16_t)n, nn = (uint16_t)ni;
    memcpy(e, &wl, 2);
    memcpy(e + 2, &nn, 2);
    memcpy(e + 4, w, n);
    memcpy(e + 4 + n, ids, ni * sizeof *ids);
    sh->hash[i] = h;
    sh->off[i] = (uint32_t)sh->used;
    sh->used += need;
    sh->count++;
done:
    pthread_mutex_unlock(&sh->mu);
}

/* ---- BPE ---- */

typedef struct {
    uint32_t rank, pos;
    int32_t id;
} pending;

static int before(const pending *a, const pending *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(pending *h, size_t *n, pending x)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!before(&x, &h[p]))
            break;
        h[i] = h[p];
        i = p;
    }
    h[i] = x;
}

static pending heap_pop(pending *h, size_t *n)
{
    pending top = h[0], x = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && before(&h[c + 1], &h[c]))
            c++;
        if (!before(&h[c], &x))
            break;
        h[i] = h[c];
        i = c;
    }
    if (*n)
        h[i] = x;
    return top;
}

void txt_bpe_scratch_free(txt_bpe_scratch *sc)
{
    free(sc->sym);
    free(sc->prev);
    free(sc->next);
    free(sc->alive);
    free(sc->heap);
    free(sc->ids);
    memset(sc, 0, sizeof *sc);
}

static int scratch_reserve(txt_bpe_scratch *sc, size_t n)
{
    if (n > sc->cap) {
        size_t cap = sc->cap ? sc->cap : 64;
        while (cap < n)
            cap *= 2;
        int32_t *sym = realloc(sc->sym, cap * sizeof *sym);
        if (sym)
            sc->sym = sym;
        int32_t *prev = realloc(sc->prev, cap * sizeof *prev);
        if (prev)
            sc->prev = prev;
        int32_t *next = realloc(sc->next, cap * sizeof *next);
        if (next)
            sc->next = next;
        uint8_t *alive = realloc(sc->alive, cap);
        if (alive)
            sc->alive = alive;
        if (!sym || !prev || !next || !alive)
            return -1;
        sc->cap = cap;
    }
    if (n > sc->ids_cap) {
        int32_t *ids = realloc(sc->ids, sc->cap * sizeof *ids);
        if (!ids)
            return -1;
        sc->ids = ids;
        sc->ids_cap = sc->cap;
    }
    return 0;
}

static int heap_reserve(txt_bpe_scratch *sc, size_t n)
{
    if (n <= sc->heap_cap)
        return 0;
    size_t cap = sc->heap_cap ? sc->heap_cap : 64;
    while (cap < n)
        cap *= 2;
    void *h = realloc(sc->heap, cap * sizeof(pending));
    if (!h)
        return -1;
    sc->heap = h;
    sc->heap_cap = cap;
    return 0;
}

/* Queues the merge of the symbols at a and b = next[a], if there is one. */
static int queue_pair(const txt_tokenizer *t, txt_bpe_scratch *sc,
                      size_t *hn, int32_t a)
{
    const txt_merge *m = merge_get(t, sc->sym[a], sc->sym[sc->next[a]]);
    if (!m)
        return 0;
    if (heap_reserve(sc, *hn + 1))
        return -1;
    heap_push(sc->heap, hn, (pending){m->rank, (uint32_t)a, m->id});
    return 0;
}

/* CLIP's starting symbols: one per byte, the last with "</w>"; a byte
 * missing from the vocabulary becomes the unknown token (each one its own
 * symbol, fuse_unk being off), or is dropped when there is none (where the
 * reference raises an error). */
static int32_t byte_symbols(const txt_tokenizer *t, const uint8_t *w,
                            size_t n, int32_t *sym)
{
    int32_t ns = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = (i + 1 == n ? t->byte_eow_id : t->byte_id)[w[i]];
        if (id < 0)
            id = t->unk;
        if (id >= 0)
            sym[ns++] = id;
    }
    return ns;
}

static int32_t char_id(const txt_tokenizer *t, int32_t c)
{
    uint32_t key = (uint32_t)c + 1;
    for (size_t i = txt_char_slot(key, t->char_mask); t->chars[i].key;
         i = (i + 1) & t->char_mask)
        if (t->chars[i].key == key)
            return t->chars[i].id;
    return -1;
}

/* Gemma's starting symbols, as merge_word makes them: a character in the
 * vocabulary is its own symbol; one that is not becomes its UTF-8 bytes'
 * "<0xNN>" pieces when byte fallback is on and the vocabulary has all of
 * them, else the unknown token, a run of which is one symbol with
 * fuse_unk. The reference holds that unknown symbol back until the next
 * character found in the vocabulary (or the end), so byte pieces coming
 * in between go before it; so do we. Without an unknown token the
 * character is dropped (where the reference raises an error if the model
 * names one that the vocabulary lacks). */
static int32_t gemma_symbols(const txt_tokenizer *t, const uint8_t *w,
                             size_t n, int32_t *sym)
{
    int32_t ns = 0;
    int held = 0;
    for (size_t i = 0; i < n;) {
        int32_t c;
        size_t k = (size_t)txt_utf8_decode(w + i, &c);
        int32_t id = char_id(t, c);
        if (id >= 0) {
            if (held)
                sym[ns++] = t->bpe_unk;
            held = 0;
            sym[ns++] = id;
        } else {
            int bytes = t->byte_fallback;
            for (size_t j = 0; j < k && bytes; j++)
                bytes = t->byte_id[w[i + j]] >= 0;
            if (bytes)
                for (size_t j = 0; j < k; j++)
                    sym[ns++] = t->byte_id[w[i + j]];
            else if (t->bpe_unk >= 0) {
                if (held && !t->fuse_unk)
                    sym[ns++] = t->bpe_unk;
                held = 1;
            }
        }
        i += k;
    }
    if (held)
        sym[ns++] = t->bpe_unk;
    return ns;
}

long txt_bpe_word(txt_tokenizer *t, const uint8_t *w, size_t n,
                  txt_bpe_scratch *sc, const int32_t **ids)
{
    if (scratch_reserve(sc, n + 1))
        return -1;
    *ids = sc->ids;
    uint64_t h = 0;
    if (n <= TXT_CACHE_WORD) {
        h = word_hash(w, n);
        long got = cache_get(t, h, w, n, sc->ids);
        if (got >= 0)
            return got;
    }

    int32_t ns = t->kind == TXT_KIND_GEMMA ? gemma_symbols(t, w, n, sc->sym)
                                           : byte_symbols(t, w, n, sc->sym);
    for (int32_t i = 0; i < ns; i++) {
        sc->prev[i] = i - 1;
        sc->next[i] = i + 1;
        sc->alive[i] = 1;
    }
    if (ns > 0)
        sc->next[ns - 1] = -1;

    size_t hn = 0;
    for (int32_t i = 0; i + 1 < ns; i++)
        if (queue_pair(t, sc, &hn, i))
            return -1;
    while (hn) {
        pending top = heap_pop(sc->heap, &hn);
        int32_t a = (int32_t)top.pos, b = sc->next[a];
        if (!sc->alive[a] || b < 0)
            continue;
        /* Stale if the pair there has changed; like the reference, only
         * the merged symbol is compared. */
        const txt_merge *m = merge_get(t, sc->sym[a], sc->sym[b]);
        if (!m || m->id != top.id)
            continue;
        sc->sym[a] = top.id;
        sc->alive[b] = 0;
        sc->next[a] = sc->next[b];
        if (sc->next[b] >= 0)
            sc->prev[sc->next[b]] = a;
        if (sc->prev[a] >= 0 && queue_pair(t, sc, &hn, sc->prev[a]))
            return -1;
        if (sc->next[a] >= 0 && queue_pair(t, sc, &hn, a))
            return -1;
    }

    long k = 0;
    for (int32_t i = ns ? 0 : -1; i >= 0; i = sc->next[i])
        sc->ids[k++] = sc->sym[i];
    if (n <= TXT_CACHE_WORD)
        cache_put(t, h, w, n, sc->ids, (size_t)k);
    return k;
}
