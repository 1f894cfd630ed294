/*
 * Tokenizer throughput: builds a few MB of English-like text from a fixed
 * word list and a fixed-seed generator (Zipf-like word frequencies,
 * capitals, punctuation, numbers, the odd accented word), then reports MB/s
 * of input for caption-sized strings (each its own txt_encode call, as
 * vit_embed_texts makes them: first with a cold word cache, then warm), for
 * the whole text as one untruncated string, for captions on several threads
 * sharing one tokenizer, and for a 1 MB input truncated to 77 tokens.
 *
 *     build/text_bench [TOKENIZER_DIR [MEGABYTES [THREADS]]]
 *         (default tests/fixtures/text/bpe, 4 MB, 2 threads)
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "text/text.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static const char *const words[] = {
    "the", "a", "of", "and", "in", "on", "with", "to", "is", "at", "photo",
    "picture", "image", "man", "woman", "dog", "cat", "people", "street",
    "sitting", "standing", "red", "blue", "white", "black", "green", "two",
    "three", "large", "small", "group", "table", "water", "tree", "house",
    "car", "road", "city", "building", "beach", "mountain", "sky", "snow",
    "playing", "holding", "wearing", "shirt", "hat", "child", "children",
    "ball", "field", "grass", "window", "door", "room", "kitchen", "food",
    "plate", "pizza", "train", "bus", "bicycle", "horse", "bird", "flowers",
    "night", "light", "old", "young", "next", "front", "behind", "near",
    "under", "over", "through", "walking", "running", "looking", "smiling",
    "beautiful", "colorful", "wooden", "stone", "bridge", "river", "boat",
    "airplane", "flying", "sunset", "cloudy", "rainy", "portrait", "close",
    "view", "background", "foreground", "vintage", "modern", "painting",
    "drawing", "illustration", "style", "detailed", "landscape", "forest",
    "lake", "ocean", "waves", "surfing", "skateboard", "umbrella", "jacket",
    "glasses", "phone", "laptop", "book", "reading", "cooking", "eating",
    "drinking", "coffee", "cup", "bottle", "wine", "bread", "cake", "party",
    "wedding", "birthday", "festival", "market", "shop", "store", "crowd",
    "police", "officer", "soldier", "teacher", "student", "doctor", "nurse",
    "player", "team", "game", "stadium", "concert", "music", "guitar",
    "piano", "singer", "dancer", "dancing", "café", "naïve", "résumé",
    "it's", "don't", "they're", "we've", "I'm", "you'll", "she'd",
};
#define NWORDS (sizeof words / sizeof words[0])

static uint64_t rng = 0x9E3779B97F4A7C15ULL;
static uint32_t next_rand(void)
{
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(rng >> 33);
}

/* A word index with frequencies falling off roughly as 1/rank. */
static size_t zipf_word(void)
{
    double u = (next_rand() + 0.5) / 4294967296.0;
    size_t i = (size_t)(NWORDS * u * u * u);
    return i < NWORDS ? i : NWORDS - 1;
}

/* Appends one caption of about 8-20 words (and a newline) to buf. */
static size_t caption(char *buf)
{
    size_t n = 0;
    int nw = 6 + (int)(next_rand() % 15);
    for (int w = 0; w < nw; w++) {
        if (w)
            buf[n++] = ' ';
        uint32_t r = next_rand() % 100;
        if (r < 3)
            n += (size_t)sprintf(buf + n, "%u", next_rand() % 2025);
        else {
            const char *s = words[zipf_word()];
            size_t k = strlen(s);
            memcpy(buf + n, s, k);
            if ((w == 0 && r < 60) || r > 96)
                buf[n] = (char)(buf[n] >= 'a' && buf[n] <= 'z'
                                    ? buf[n] - 32 : buf[n]);
            n += k;
        }
        if (next_rand() % 12 == 0)
            buf[n++] = ",;:!"[next_rand() % 4];
    }
    buf[n++] = next_rand() % 4 ? '.' : '!';
    buf[n++] = '\n';
    return n;
}

typedef struct {
    txt_tokenizer *t;
    const char *text;
    const size_t *start;  /* caption i is text[start[i] .. start[i+1]) */
    size_t from, to;
    long ids;
} job;

static void *run_captions(void *p)
{
    job *j = p;
    int32_t ids[256];
    for (size_t i = j->from; i < j->to; i++) {
        int n = txt_encode(j->t, j->text + j->start[i],
                           j->start[i + 1] - j->start[i] - 1, ids, 256);
        if (n < 0) {
            fprintf(stderr, "text_bench: txt_encode failed\n");
            exit(1);
        }
        j->ids += n;
    }
    return NULL;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "tests/fixtures/text/bpe";
    double mb = argc > 2 ? atof(argv[2]) : 4;
    int nth = argc > 3 ? atoi(argv[3]) : 2;
    if (mb <= 0 || nth < 1 || nth > 64) {
        fprintf(stderr, "usage: text_bench [DIR [MEGABYTES [THREADS]]]\n");
        return 2;
    }
    char err[512];
    txt_tokenizer *t;
    double t0 = now();
    txt_status st = txt_tokenizer_load(dir, &t, err, sizeof err);
    if (st != TXT_OK) {
        fprintf(stderr, "text_bench: %s\n", err);
        return 1;
    }
    printf("load %s: %.1f ms\n", dir, (now() - t0) * 1e3);

    size_t cap = (size_t)(mb * 1048576) + 4096, n = 0, nc = 0;
    char *text = malloc(cap);
    size_t *start = malloc((cap / 8 + 2) * sizeof *start);
    while (n + 1024 < cap - 4096 || nc == 0) {
        start[nc++] = n;
        n += caption(text + n);
    }
    start[nc] = n;
    printf("input: %.2f MB of English-like text, %zu captions of %.0f bytes "
           "on average\n", n / 1048576.0, nc, (double)n / nc);

    /* Captions, one call each, cold then warm word cache. */
    for (int pass = 0; pass < 2; pass++) {
        job j = {t, text, start, 0, nc, 0};
        t0 = now();
        run_captions(&j);
        double s = now() - t0;
        printf("captions, 1 thread, %s cache: %7.2f MB/s  (%.1f us per "
               "caption, %.0f ids/s)\n",
               pass ? "warm" : "cold", n / 1048576.0 / s, s / nc * 1e6,
               j.ids / s);
    }

    /* The same on several threads sharing the tokenizer. */
    pthread_t th[64];
    job jobs[64];
    t0 = now();
    for (int i = 0; i < nth; i++) {
        jobs[i] = (job){t, text, start, nc * (size_t)i / (size_t)nth,
                        nc * (size_t)(i + 1) / (size_t)nth, 0};
        pthread_create(&th[i], NULL, run_captions, &jobs[i]);
    }
    for (int i = 0; i < nth; i++)
        pthread_join(th[i], NULL);
    double s = now() - t0;
    printf("captions, %d threads:         %7.2f MB/s\n", nth,
           n / 1048576.0 / s);

    /* The whole text as one string, untruncated. */
    int32_t *ids = malloc((n + 2) * sizeof *ids);
    t0 = now();
    int k = txt_encode(t, text, n, ids, (int)(n + 2));
    s = now() - t0;
    printf("one %.2f MB string, untruncated: %7.2f MB/s  (%d ids)\n",
           n / 1048576.0, n / 1048576.0 / s, k);

    /* 1 MB truncated to 77: only the start is tokenized. */
    size_t one = n < 1048576 ? n : 1048576;
    t0 = now();
    k = txt_encode(t, text, one, ids, 77);
    s = now() - t0;
    printf("one 1 MB string, truncated to 77: %.3f ms (%d ids)\n", s * 1e3,
           k);

    free(ids);
    free(start);
    free(text);
    txt_tokenizer_free(t);
    return 0;
}
