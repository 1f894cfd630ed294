/*
 * What the tokenizer's loading shares between its files: load.c reads the
 * files (the vocabulary, merges, added tokens, the SentencePiece model),
 * specials.c resolves the special tokens and builds the tables the
 * encoder needs.
 */
#ifndef TXT_LOADER_H
#define TXT_LOADER_H

#include <jansson.h>

#include "text/text_impl.h"

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

/* One sentence, after the path of the file being read, into L->err;
 * returns st. */
txt_status txt__lfail(loader *L, txt_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A string's id in the vocabulary being loaded, or -1. */
int32_t txt__vocab_get(const loader *L, const char *s, size_t n);
/* Adds (or, for a content already there, updates) an added token. */
txt_status txt__added_put(loader *L, const char *s, size_t n, int32_t id,
                          int normalized, int special);
/* A JSON object's boolean k, or dflt. */
int txt__flag_of(json_t *o, const char *k, int dflt);
/* Whether v is the string s. */
int txt__str_is(json_t *v, const char *s);

/* specials.c: the special tokens (with each class's defaults) of
 * tokenizer_config.json cfg, the padding and truncation sides, and what
 * the encoder needs once the files are read. */
txt_status txt__specials(loader *L, txt_tokenizer *t, json_t *cfg,
                         json_t *smap);
txt_status txt__sides(loader *L, txt_tokenizer *t, json_t *cfg);
txt_status txt__finish(loader *L, txt_tokenizer *t, json_t *cfg);

#endif
