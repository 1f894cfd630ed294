/*
 * text: strings to token ids. This header is the whole interface of the
 * leaf library that loads a tokenizer from a Hugging Face model directory
 * and turns any byte string into the token ids that `transformers` 5 gives
 * for it. Three kinds are known (txt_kind_of tells which was loaded;
 * nothing else differs for a caller): CLIP's byte-level BPE
 * (CLIPTokenizerFast), SigLIP's SentencePiece Unigram model
 * (SiglipTokenizer, the rules of which are at the end of this comment and
 * in text/siglip.c), and Gemma's byte-fallback BPE, SigLIP 2's
 * (GemmaTokenizer, after the SigLIP rules). It knows nothing of models. Nothing here prints, exits or aborts; every fallible call returns
 * a txt_status and writes a sentence to `err`. A worked example:
 *
 *     char err[256];
 *     txt_tokenizer *tok;
 *     if (txt_tokenizer_load("models/clip", &tok, err, sizeof err) != TXT_OK)
 *         { fprintf(stderr, "%s\n", err); return 1; }
 *     int32_t ids[77];
 *     int n = txt_encode(tok, "a photo of a cat", 16, ids, 77);
 *     // ids[0] = bos (49406) ... ids[n-1] = eos (49407); pad the rest with
 *     // txt_pad_id(tok) if the model wants a fixed length.
 *     txt_tokenizer_free(tok);
 *
 * What txt_encode does, in the reference's order (transformers 5.x
 * CLIPTokenizer, which rebuilds this pipeline itself whatever tokenizer.json
 * says, so the files only supply the vocabulary, merges and special tokens):
 *
 *   1. Invalid UTF-8 is replaced, never rejected: each maximal ill-formed
 *      subsequence becomes one U+FFFD, exactly as Python's
 *      `bytes.decode("utf-8", "replace")` does (an unexpected continuation
 *      byte, a byte that can never start a sequence, a truncated sequence,
 *      an overlong form, a surrogate or a value above U+10FFFF). The
 *      fixtures are made from Python strings decoded with that rule. NUL
 *      bytes are ordinary characters; the input is length-delimited.
 *   2. Added tokens (`<|startoftext|>`, `<|endoftext|>`, ...) are found in
 *      the text, leftmost-longest, and become their own ids. Those marked
 *      "normalized": false match the raw text only (so `<|ENDOFTEXT|>` is
 *      ordinary text); those marked true match after normalization (the
 *      openai checkpoints mark `<|startoftext|>` so, and `<|StartOfText|>`
 *      then gives 49406).
 *   3. The text between them is normalized: NFC, every run of White_Space
 *      characters becomes one space, then each character is lowercased
 *      with Rust's char::to_lowercase (so 'İ' becomes "i̇", two
 *      characters, and final sigma is not special).
 *   4. It is split into words by the regex
 *      `<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|
 *      [\p{N}]|[^\s\p{L}\p{N}]+` with the spaces dropped (every digit is a
 *      word of its own; "<|endoftext|>" left here is cut into "<|",
 *      "endoftext", "|>" by the byte-level step that follows).
 *   5. Each word's UTF-8 bytes are merged by BPE, its last byte carrying the
 *      `</w>` end-of-word suffix; a symbol missing from the vocabulary
 *      becomes the unknown token.
 *   6. bos is put first and eos last (RobertaProcessing).
 *
 * The reference does this with Oniguruma (Unicode 16) for the regexes, the
 * unicode-normalization-alignments crate (Unicode 9) for NFC and Rust's
 * standard library (Unicode 17) for lowercasing. This library uses PCRE2
 * and utf8proc, whose Unicode versions differ; text/normalize.c (NFC,
 * lowercase) and text/load.c (the regex's letter and number classes) carry
 * small tables of the characters on which they disagree: new case pairs
 * and 'İ', combining marks that the reference's NFC leaves alone, letters
 * and digits of Unicode 15 and 16, and U+180E, which PCRE2's \s holds and
 * Oniguruma's does not. Checked exhaustively over every code point with
 * PCRE2 10.42 (Unicode 14) and utf8proc 2.8.0 (Unicode 15); a newer utf8proc
 * (Unicode 16 or later) may normalize a few characters of new scripts
 * differently, which tests/check_text.c would report.
 *
 * SigLIP (a directory whose tokenizer_config.json names SiglipTokenizer,
 * or that holds only spiece.model): the text, its invalid UTF-8 replaced as
 * in step 1, is canonicalized the way big_vision trained SigLIP (Python's
 * str.lower(), ASCII punctuation removed, whitespace runs made one space,
 * the ends stripped) and encoded by the sentencepiece library's algorithm
 * with the model's own normalization table (nmt_nfkc) and Unigram scores;
 * "</s>" is appended, and nothing is put first. The result is
 * SiglipTokenizer's with truncation=True, max_length=max_ids: the first
 * max_ids - 1 ids and then eos, unless the last kept id already is eos.
 * txt_encode_padded pads it as SigLIP's processor does (padding=
 * "max_length", 64, with pad "</s>"); SigLIP's model needs that. Checked
 * against transformers 5.25 and sentencepiece 0.2.3 on thousands of strings
 * and, with a byte-fallback model, on every code point.
 *
 * Gemma (SigLIP 2's google/siglip2-* checkpoints: a tokenizer.json whose
 * tokenizer_config.json names GemmaTokenizer or Siglip2Tokenizer, or,
 * naming no class, whose model is BPE with byte_fallback): transformers 5
 * keeps only the vocabulary, merges, added tokens and post-processor of
 * tokenizer.json and runs its own pipeline. Invalid UTF-8 is replaced as in
 * step 1 and the added tokens are cut out as in step 2 (Gemma's own are
 * all matched on the raw text: "<eos>", "<start_of_turn>", newlines, HTML
 * tags, ...); the text between them has every space made "▁" (after Rust's
 * lowercase, as in step 3, for Siglip2Tokenizer, which AutoTokenizer picks
 * for model_type siglip2, not for SigLIP 2's fixed-resolution siglip
 * checkpoints), and what is left between the added tokens marked
 * normalized is one word: no pre-tokenizer splits it. Its BPE starts
 * from one symbol per character; a character missing from the vocabulary
 * is its UTF-8 bytes' "<0xNN>" pieces (byte fallback), or the unknown
 * token when those are missing too. Then tokenizer.json's post-processor
 * frames the ids: for SigLIP 2 nothing before and "<eos>" (1) after. With
 * truncation=True, max_length=max_ids the text keeps what leaves room for
 * that frame. txt_encode_padded pads with "<pad>" (0) as
 * padding="max_length" does, on tokenizer_config.json's padding_side
 * (GemmaTokenizer's default is the left; SigLIP 2's conversion script
 * set right): what SigLIP 2's model needs, with max_ids 64. Checked
 * against transformers 5.25 (tokenizers 0.23.3) on thousands of strings
 * and on every code point.
 *
 * Threads: a loaded tokenizer may be shared by any number of threads, and
 * txt_encode may run on it concurrently. Its only mutable part is a cache of
 * recently seen words, split into shards each guarded by a mutex (SigLIP's
 * has none: each call works in memory of its own).
 */
#ifndef TEXT_H
#define TEXT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Append-only; txt_status_str gives the fixed message of each. */
#define TXT_STATUS_LIST(X)                                          \
    X(TXT_OK, "ok")                                                 \
    X(TXT_E_ARG, "invalid argument")                                \
    X(TXT_E_NOMEM, "out of memory")                                 \
    X(TXT_E_IO, "cannot read a tokenizer file")                     \
    X(TXT_E_NOTFOUND, "no tokenizer files in the directory")        \
    X(TXT_E_FORMAT, "malformed tokenizer file")                     \
    X(TXT_E_UNSUPPORTED, "not a tokenizer this library runs")       \
    X(TXT_E_LIBRARY, "a library call failed")

typedef enum {
#define TXT_STATUS_ENUM(name, msg) name,
    TXT_STATUS_LIST(TXT_STATUS_ENUM)
#undef TXT_STATUS_ENUM
} txt_status;

/* The fixed message of a status ("malformed tokenizer file"); never NULL. */
const char *txt_status_str(txt_status st);

typedef struct txt_tokenizer txt_tokenizer;

/* What a loaded tokenizer is (txt_kind). */
typedef enum {
    TXT_KIND_CLIP = 0,  /* CLIP's byte-level BPE: bos text eos */
    TXT_KIND_SIGLIP,    /* SigLIP's SentencePiece Unigram: text eos */
    TXT_KIND_GEMMA,     /* Gemma's byte-fallback BPE (SigLIP 2): text eos */
} txt_kind;

/* Loads the tokenizer of the model directory `dir`: SigLIP's `spiece.model`
 * when tokenizer_config.json's tokenizer_class is "SiglipTokenizer" (or
 * when it is the directory's only tokenizer file), else `tokenizer.json`
 * when it is there (Gemma's when the class is "GemmaTokenizer" or
 * "Siglip2Tokenizer", or when none is named and its model is BPE with
 * byte_fallback; else CLIP's), else `vocab.json` + `merges.txt` (first line
 * `#version: ...`);
 * and, from `tokenizer_config.json` when present, the special tokens
 * (bos_token, eos_token, unk_token, pad_token, ..., as strings or
 * AddedToken objects; CLIP's defaults otherwise), `added_tokens_decoder`
 * and `model_max_length`, and from a legacy `special_tokens_map.json` the
 * special tokens it overrides. Added tokens and their "normalized" flags
 * are registered as transformers 5 registers them (the decoder, else
 * tokenizer.json's added_tokens, then the special tokens the decoder
 * lacks, a later one winning); a special token missing from the vocabulary
 * gets a new id after it, as there. tokenizer.json's merges may be "a b"
 * strings or ["a", "b"] pairs; padding_side ("left" or "right"; the
 * class's default when absent). A tokenizer.json whose normalizer,
 * pre-tokenizer or model is not CLIP's (or, run with no class, not
 * Gemma's), a Gemma post-processor other than a template of special
 * tokens around the text, an added token with lstrip, rstrip or
 * single_word (but SigLIP's), or truncation_side "left" gives
 * TXT_E_UNSUPPORTED; a file that cannot be parsed, or a merge whose tokens
 * are not in the vocabulary, TXT_E_FORMAT.
 * On success *out owns the tokenizer (free it with txt_tokenizer_free); on
 * failure *out is untouched and `err` (may be NULL) names the file and the
 * problem. */
txt_status txt_tokenizer_load(const char *dir, txt_tokenizer **out,
                              char *err, size_t errlen);

/* Frees the tokenizer; NULL is a harmless no-op. No txt_encode may be
 * running on it. */
void txt_tokenizer_free(txt_tokenizer *t);

/* Tokenizes the `len` bytes at `text` (any bytes: see the rules above) and
 * writes at most `max_ids` ids to `ids`. For max_ids >= 2 the result is
 * what CLIPTokenizerFast gives with truncation=True, max_length=max_ids:
 * bos, then as many of the text's tokens as fit in max_ids - 2, then eos.
 * Below 2 the reference does not truncate at all, and the first max_ids ids
 * of its output are written: [bos] for 1, nothing for 0. Nothing is padded.
 * Splitting and BPE stop as soon as the truncated result is complete, so a
 * long input costs little more than its normalization. Gemma's is the same
 * with its post-processor's ids in place of bos and eos (none before and
 * eos after for SigLIP 2, so [eos] for 1), though each stretch between
 * added tokens is merged whole. For SigLIP, max_ids
 * >= 1 gives SiglipTokenizer's truncated result (see above: [eos] for 1),
 * 0 nothing; its segmentation runs over the whole of each stretch between
 * added tokens. Returns the number of ids written, or -1 when
 * `t` or `ids` is NULL (with max_ids > 0), `text` is NULL with len > 0,
 * max_ids is negative, or memory runs out. Safe to call from several threads
 * on one tokenizer. */
int txt_encode(txt_tokenizer *t, const char *text, size_t len, int32_t *ids,
               int max_ids);

/* The ids of the special tokens. pad is tokenizer_config.json's pad_token
 * (CLIP's default is "<|endoftext|>", the same id as eos; SigLIP's is
 * "</s>", its eos; Gemma's "<pad>", 0, with eos "<eos>", 1, and bos
 * "<bos>", 2, which SigLIP 2 does not put in); -1 if the vocabulary has
 * none (SigLIP has no bos). */
int32_t txt_bos_id(const txt_tokenizer *t);
int32_t txt_eos_id(const txt_tokenizer *t);
int32_t txt_pad_id(const txt_tokenizer *t);

/* The number of ids: one more than the largest id of the vocabulary and the
 * added tokens (49408 for the openai checkpoints, 32000 for SigLIP's,
 * 256000 for SigLIP 2's). */
int txt_vocab_size(const txt_tokenizer *t);

/* tokenizer_config.json's model_max_length (77 for CLIP, 64 for SigLIP,
 * whose default it also is), or 0 when it is absent or is transformers'
 * "no limit" placeholder (above 2^24; SigLIP 2's, whose processor gives 64
 * itself). */
int txt_max_length(const txt_tokenizer *t);

/* The kind of tokenizer `t` is (TXT_KIND_CLIP for NULL). */
txt_kind txt_kind_of(const txt_tokenizer *t);

/* How open_clip tokenizes with a CLIP tokenizer (text/clean.c): as
 * transformers does (NONE); as its SimpleTokenizer (SIMPLE: each text
 * cleaned first — ftfy.fix_text but its mojibake repair, html.unescape
 * twice, Python's whitespace split and lower — then split by its own
 * regex, whose special tokens are "<start_of_text>" and "<end_of_text>");
 * or as its HFTokenizer (HF: cleaned the same but not lowercased, then the
 * tokenizer as transformers runs it). Set it before any txt_encode. */
typedef enum {
    TXT_OPENCLIP_NONE = 0,
    TXT_OPENCLIP_SIMPLE = 1,
    TXT_OPENCLIP_HF = 2,
} txt_openclip;
void txt_set_openclip_clean(txt_tokenizer *t, txt_openclip mode);

/* txt_encode into ids[0..max_ids), then the rest of the max_ids filled
 * with the pad id (the eos id when there is none), as a tokenizer called
 * with padding="max_length", truncation=True, max_length=max_ids gives
 * them (SigLIP's and SigLIP 2's processors: 64): after the ids, or before
 * them when the tokenizer pads on the left (txt_pads_left). Returns the
 * number of ids that are not padding, or -1 as txt_encode. */
int txt_encode_padded(txt_tokenizer *t, const char *text, size_t len,
                      int32_t *ids, int max_ids);

/* 1 when txt_encode_padded puts the padding before the ids
 * (tokenizer_config.json's padding_side "left", or GemmaTokenizer's
 * default when it says nothing), 0 when after (and for NULL). */
int txt_pads_left(const txt_tokenizer *t);

#ifdef __cplusplus
}
#endif

#endif
