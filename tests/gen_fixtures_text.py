"""Fixtures for tests/check_text.c, made by the reference: transformers'
CLIPTokenizerFast (transformers 5.x, backed by `tokenizers`), and its
SiglipTokenizer, GemmaTokenizer and Siglip2Tokenizer. The C tests only read
what this writes.

generate(outdir) writes, into outdir:
  bpe/      vocab.json + merges.txt built from OpenAI's merge list
            (text/clip-bpe/bpe_simple_vocab_16e6.txt.gz, or $CLIP_BPE)
            exactly as the openai/clip-vit-* checkpoints hold them (49408
            ids), and a tokenizer_config.json like theirs (model_max_length
            77, "<|startoftext|>" marked normalized as theirs is);
  json/     tokenizer.json + tokenizer_config.json, what save_pretrained of
            the tokenizer loaded from bpe/ writes (tokenizer.json re-dumped
            without indentation: same content, half the size);
  tiny/     a small tokenizer.json whose merges are "a b" strings (the
            older form), pad_token "!" and no model_max_length, with its own
            cases;
  specials/ the same tokenizer.json with an older-style tokenizer_config.json:
            special tokens as AddedToken objects with their own "normalized"
            flags, and special tokens missing from the vocabulary (which
            transformers appends with new ids);
  legacy/   the same as vocab.json + merges.txt, with a legacy
            special_tokens_map.json that overrides tokenizer_config.json;
  cases.json
            {"max_length": 77, "cases": [[hex input, ids truncated to 77,
            ids untruncated or null when the same], ...],
             "trunc": [[hex input, max_length, ids], ...],
             "long": {...the 1 MB input's recipe and its ids...},
             "tiny": [[hex input, ids], ...],
             "specials": {"specials": {"vocab_size", "bos", "eos", "pad",
                           "max_length", "cases": [[hex, ids], ...]},
                          "legacy": {...}}}
  siglip/   a small SentencePiece Unigram model (spiece.model, trained here
            by the sentencepiece trainer as SigLIP's was: nmt_nfkc, pad 0,
            eos 1, unk 2, no bos) with google/siglip-*'s other files:
            tokenizer_config.json (SiglipTokenizer, lstrip/rstrip special
            tokens, model_max_length 64) and special_tokens_map.json;
  siglip_bf/ the same model trained with byte_fallback, in the layout
            transformers 5's save_pretrained writes (spiece.model and its
            tokenizer_config.json only), for the exhaustive check;
  siglip.json
            {"max_length": 64, "cases": [[hex input, ids padded to 64 as
             SigLIP's processor pads them, untruncated ids], ...],
             "trunc": [[hex, max_length, ids], ...], "long": {...},
             "bf_blocks": [[n, fnv], ...] every code point through
             siglip_bf/, the strings of siglip_block_string};
  blocks.json
            every code point, 256 at a time: for block b the string is
            "a{c}{c}!{c}1{c}\uac00{c}\u0301 " for each non-surrogate c of
            the block (letters, digits, punctuation and space around it, a
            Hangul LV syllable before it, a combining mark after it), and
            the entry is [number of ids, FNV-1a 64 of the ids as
            little-endian uint32, in hex] of its untruncated encoding. This
            is the exhaustive check of normalization and the split classes.

  gemma/    SigLIP 2's tokenizer (Gemma's) in google/siglip2-*'s layout:
            tokenizer.json (a BPE model with byte fallback converted by
            transformers from a SentencePiece model trained here as Gemma's
            was, 3500 ids with the 256 byte pieces; no pre-tokenizer, eos
            appended by the post-processor, as transformers 4 wrote it),
            tokenizer_config.json (GemmaTokenizer, no bos, eos, padding on
            the right, input_ids alone) and special_tokens_map.json (the
            hub's tokenizer.model, which GemmaTokenizer does not read, is
            left out);
  siglip2/  the same tokenizer as Siglip2Tokenizer (lowercase first), in
            the layout transformers 5's save_pretrained writes, with two
            added tokens matched on normalized text;
  gemma_tiny/ a small tokenizer.json with no class named (run as it is by
            TokenizersBackend): most byte pieces missing, bos and eos;
  gemma.json
            {"gemma": {"max_length": 64, "vocab_size", "bos", "eos", "pad",
              "unk", "cases": [[hex, ids padded to 64 as SigLIP 2's
              processor pads them, untruncated ids], ...], "trunc",
              "long", "blocks" (every code point, blocks.json's strings),
              "left": [[hex, ids padded to 16 on the left], ...] (gemma/
              with no padding_side)},
             "siglip2": {... the same through siglip2/, a third of the
              strings},
             "tiny": {"vocab_size", "bos", "eos", "max_length",
              "cases": [[hex, ids, [[max_length, ids truncated], ...]]]}}

Inputs are bytes. Those that are not UTF-8 reach the reference as
`bytes.decode("utf-8", "replace")`, the rule text.h documents. The SigLIP
reference is transformers' SiglipTokenizer, which runs the sentencepiece
library; both tokenizer directories are also checked here to give the
same ids from the hub's layout and from save_pretrained's.

    python3 tests/gen_fixtures_text.py [OUTDIR]   (default tests/fixtures/text)

TEXT_FIXTURES=siglip or TEXT_FIXTURES=gemma makes only those.
"""

import gzip
import json
import os
import random
import shutil
import sys
import warnings

SEED = 20250611
BPE_GZ = os.environ.get("CLIP_BPE", os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "text", "clip-bpe",
    "bpe_simple_vocab_16e6.txt.gz"))


def bytes_to_unicode():
    bs = (list(range(ord("!"), ord("~") + 1)) +
          list(range(ord("¡"), ord("¬") + 1)) +
          list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def write_vocab_merges(d):
    """vocab.json + merges.txt as openai/clip-vit-base-patch32 has them:
    the 256 byte symbols, the same with </w>, one token per merge (the
    first 49152 - 256 - 2 merges of the list), then the two specials."""
    lines = gzip.open(BPE_GZ).read().decode("utf-8").split("\n")
    merges = lines[1:49152 - 256 - 2 + 1]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m.split(" ")) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == 49408 and len(set(vocab)) == 49408
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump({t: i for i, t in enumerate(vocab)}, f, ensure_ascii=False)
    with open(os.path.join(d, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")


def write_bpe_dir(d):
    """write_vocab_merges, and a tokenizer_config.json like openai's."""
    write_vocab_merges(d)
    special = {"lstrip": False, "rstrip": False, "single_word": False,
               "special": True}
    cfg = {
        "add_prefix_space": False,
        "added_tokens_decoder": {
            "49406": dict(content="<|startoftext|>", normalized=True,
                          **special),
            "49407": dict(content="<|endoftext|>", normalized=False,
                          **special),
        },
        "bos_token": "<|startoftext|>",
        "clean_up_tokenization_spaces": True,
        "do_lower_case": True,
        "eos_token": "<|endoftext|>",
        "errors": "replace",
        "model_max_length": 77,
        "pad_token": "<|endoftext|>",
        "tokenizer_class": "CLIPTokenizer",
        "unk_token": "<|endoftext|>",
    }
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)


SPECIALS_CONFIG = {
    "bos_token": {"__type": "AddedToken", "content": "<|startoftext|>",
                  "lstrip": False, "normalized": True, "rstrip": False,
                  "single_word": False},
    "eos_token": "</s>",
    "unk_token": {"__type": "AddedToken", "content": "<|endoftext|>",
                  "lstrip": False, "normalized": True, "rstrip": False,
                  "single_word": False},
    "pad_token": {"__type": "AddedToken", "content": "<Pad>",
                  "lstrip": False, "normalized": True, "rstrip": False,
                  "single_word": False, "special": True},
    "mask_token": "<mask>",
    "model_max_length": 1e30,
    "tokenizer_class": "CLIPTokenizer",
}


LEGACY_CONFIG = {"bos_token": "<|startoftext|>", "mask_token": "<mask>",
                 "model_max_length": 64, "tokenizer_class": "CLIPTokenizer"}
LEGACY_MAP = {
    "bos_token": {"content": "<|startoftext|>", "lstrip": False,
                  "normalized": True, "rstrip": False, "single_word": False},
    "eos_token": {"content": "<|endoftext|>", "lstrip": False,
                  "normalized": True, "rstrip": False, "single_word": False},
    "unk_token": "<|endoftext|>",
    "pad_token": "<|endoftext|>",
}


def write_tiny_dir(d, big_json, config=None, smap=None):
    """A small CLIP tokenizer.json with the merges as "a b" strings; with
    `smap`, vocab.json + merges.txt and a legacy special_tokens_map.json
    instead."""
    b2u = bytes_to_unicode()
    vocab = list(b2u.values())
    vocab = vocab + [v + "</w>" for v in vocab]
    words = ["the", "cat", "dog", "photo", "of", "a", "on", "mat", "hello",
             "world", "ing", "er", "lo", "!!", "...", "12"]
    merges = []
    for w in words:
        syms = [b2u[b] for b in w.encode()]
        syms[-1] += "</w>"
        while len(syms) > 1:
            m = (syms[0], syms[1])
            if " ".join(m) not in merges:
                merges.append(" ".join(m))
                if m[0] + m[1] not in vocab:
                    vocab.append(m[0] + m[1])
            syms = [m[0] + m[1]] + syms[2:]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    tj = json.loads(json.dumps(big_json))
    tj["model"]["vocab"] = {t: i for i, t in enumerate(vocab)}
    tj["model"]["merges"] = merges
    n = len(vocab)
    for a in tj["added_tokens"]:
        a["id"] = n - 2 if a["content"] == "<|startoftext|>" else n - 1
    tj["post_processor"]["cls"][1] = n - 2
    tj["post_processor"]["sep"][1] = n - 1
    os.makedirs(d, exist_ok=True)
    if smap is None:
        with open(os.path.join(d, "tokenizer.json"), "w",
                  encoding="utf-8") as f:
            json.dump(tj, f, ensure_ascii=False)
    else:
        with open(os.path.join(d, "vocab.json"), "w", encoding="utf-8") as f:
            json.dump(tj["model"]["vocab"], f, ensure_ascii=False)
        with open(os.path.join(d, "merges.txt"), "w", encoding="utf-8") as f:
            f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
        with open(os.path.join(d, "special_tokens_map.json"), "w") as f:
            json.dump(smap, f, indent=2)
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump(config or {"bos_token": "<|startoftext|>",
                             "eos_token": "<|endoftext|>",
                             "unk_token": "<|endoftext|>", "pad_token": "!",
                             "tokenizer_class": "CLIPTokenizer"},
                  f, indent=2)


# ---- the inputs ----

WORDS = """a about above across after again against all almost alone along
already also although always among an and another any anyone anything are
around as at away back be because been before behind being below beside
best better between beyond big black blue both boy bright brown but by can
car cat children city close cold could dark day did different do does dog
done door down during each early earth eight end enough even evening ever
every eye face far fast father few field fire first five floor flower fly
food for forest four from front full garden girl give go good great green
ground group hair half hand happy hard has have he head hear heart heavy
help her here high hill him his hold home horse hot house how however
image in inside into is it its just keep kind king know lady land large
last late laugh left less let life light like line little live long look
lot love low made make man many may me mean men might mind more morning
most mother mountain move much music must my name near never new next
night nine no north not nothing now number of off often old on once one
only open or orange other our out outside over own page paper part people
person photo picture place plant play point portrait power purple put
quick quite rain red river road rock room round run said same sea second
see seem set seven several she ship short should show side sky small snow
so some something song soon sound south space stand star start still stone
stop story street strong sun sure table take tall tell ten than that the
their them then there these they thing think this those though three
through time to together too top tree two under until up upon us use very
walk wall want warm was watch water way we weather well went were west
what wheel when where which while white who whole why wide will wind
window winter with without woman wood word work world would write year
yellow yes yet you young""".split()

PUNCT = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") + [
    "...", "!!", "?!", "--", "—", "–", "«", "»", "“", "”", "‘", "’", "…",
    "·", "•", "¿", "¡", "§", "¶", "©", "®", "™", "°", "±", "×", "÷", "€",
    "£", "¥", "¢", "‰", "†", "‡", "※", "〜", "。", "、", "「", "」", "【",
    "】", "《", "》", "！", "？", "，", "：", "；"]

EMOJI = ["😀", "😂", "🥲", "❤️", "❤", "👍", "👍🏻", "👍🏽", "👍🏿", "🙏🏾",
         "👨‍👩‍👧‍👦", "👩‍💻", "🧑🏽‍🚀", "🏳️‍🌈", "🏴‍☠️", "🇺🇸", "🇯🇵", "🇫🇷🇩🇪",
         "1️⃣", "#️⃣", "©️", "☺️", "✌🏼", "🤷‍♀️", "🐈", "🐕‍🦺", "🌍", "🔥",
         "✨", "🎉", "🫠", "🪿", "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "👁‍🗨", "🧔‍♂️", "👩🏻‍❤️‍💋‍👨🏼"]

SCRIPTS = [
    "猫の写真", "一只猫坐在垫子上", "東京タワーの夜景", "我爱北京天安门",
    "ひらがなとカタカナ", "ｆｕｌｌｗｉｄｔｈ　ｔｅｘｔ", "ﾊﾝｶｸｶﾀｶﾅ",
    "고양이 사진", "안녕하세요 세계", "한국어 텍스트입니다",
    "صورة قطة على السجادة", "مرحبا بالعالم", "العربية ١٢٣ ٤٥٦",
    "बिल्ली की तस्वीर", "नमस्ते दुनिया", "हिन्दी १२३",
    "รูปแมวบนเสื่อ", "สวัสดีชาวโลก", "ภาษาไทย ๑๒๓",
    "תמונה של חתול", "שלום עולם", "Ελληνικά ΣΊΣΥΦΟΣ ΟΔΟΣ", "ΌΣΟΣ σοφός",
    "Русский текст", "ПРИВЕТ МИР", "Українська ЇЖАК", "ქართული ᲛᲗᲐᲕᲠᲣᲚᲘ",
    "Հայերեն ԱԲԳ", "ᏣᎳᎩ ᎦᏬᏂᎯᏍᏗ", "ꭰꭱꭲ", "İstanbul ISTANBUL ıi", "DİYARBAKIR",
    "Straße STRASSE ẞ", "ǅemal ǈubljana ǋego", "ﬁne ﬂow ﬀ", "Ω Ω K Å",
    "𐐀𐐁𐐂 Deseret", "𝐁𝐨𝐥𝐝 𝑖𝑡𝑎𝑙𝑖𝑐", "ⓐⓑⓒ Ⓐ", "ⅫⅣⅸ", "½ ¾ ⅓", "²³¹",
    "①②③", "٣ ۴ ߂", "𝟙𝟚𝟛", "〇一二三", "Ⲁⲃⲅ Coptic", "ᚠᚢᚦ runes",
    "ꓐꓑꓒ Lisu", "ߊߓߔ N'Ko", "ᠮᠣᠩᠭᠣᠯ", "ཀཁག Tibetan", "ሰላም Ethiopic",
    "ᐃᓄᒃᑎᑐᑦ", "ꦧꦱꦗꦮ Javanese", "𓀀𓀁 hieroglyphs", "𒀀𒀁 cuneiform",
    "Tiếng Việt có dấu", "Ngôn ngữ ĐỒNG NAI", "Türkçe ÇĞİÖŞÜ",
    "Polski ŁÓDŹ żółć", "Čeština ŘÍJEN", "Română ȘȚ șț Ş ţ",
    "Íslenska ÞÆÐ þæð", "Malti Ħ ħ Ġ ġ", "Ꞌ ꞌ Ɦ ɦ", "Ᵹ ꝼ"]

WHITESPACE = ["\t", "\n", "\r", "\r\n", "\x0b", "\x0c", "\x85", "\xa0",
              "\u1680", "\u2000", "\u2003", "\u2007", "\u200a", "\u2028",
              "\u2029", "\u202f", "\u205f", "\u3000", "\u180e", "\u200b",
              "\u200c", "\u200d", "\u2060", "\ufeff", "  ", " \t\n "]

COMBINING = ["\u0300", "\u0301", "\u0302", "\u0303", "\u0308", "\u030a",
             "\u0327", "\u0328", "\u0323", "\u0331", "\u0345", "\u0334",
             "\u05b0", "\u093c", "\u0f71", "\u0f72", "\u3099", "\u309a",
             "\u07fd", "\u1abf", "\u1df6", "\u0898", "\U0001e130",
             "\u0e38", "\u0e48", "\u0307"]

SPECIAL = ["<|startoftext|>", "<|endoftext|>"]


def english_sentence(rng, n):
    ws = [rng.choice(WORDS) for _ in range(n)]
    r = rng.random()
    if r < 0.5:
        ws[0] = ws[0].capitalize()
    elif r < 0.6:
        ws = [w.upper() for w in ws]
    elif r < 0.7:
        ws = [w.title() for w in ws]
    s = " ".join(ws)
    return s + rng.choice([".", "!", "?", "", "...", " .", ",", ";"])


def random_unicode(rng, n):
    pools = [
        lambda: chr(rng.randrange(0x20, 0x7F)),
        lambda: chr(rng.randrange(0xA0, 0x250)),
        lambda: chr(rng.randrange(0x370, 0x3FF)),
        lambda: chr(rng.randrange(0x400, 0x52F)),
        lambda: chr(rng.randrange(0x4E00, 0x9FFF)),
        lambda: chr(rng.randrange(0xAC00, 0xD7A3)),
        lambda: chr(rng.randrange(0x1100, 0x11FF)),
        lambda: chr(rng.randrange(0x1F300, 0x1FAFF)),
        lambda: rng.choice(COMBINING),
        lambda: rng.choice(WHITESPACE),
        lambda: rng.choice(PUNCT),
        lambda: rng.choice(SPECIAL),
        lambda: chr(rng.randrange(0x10000, 0x110000)),
        lambda: chr(rng.randrange(0, 0x20)),
        lambda: chr(rng.randrange(0xE000, 0xFFFF)),
        lambda: rng.choice(["'s", "'S", "'ll", "'T", "'re", "'VE", "'m",
                            "'D", "'", "’"]),
        lambda: str(rng.randrange(0, 10 ** rng.randrange(1, 6))),
    ]
    return "".join(rng.choice(pools)() for _ in range(n))


def build_cases():
    rng = random.Random(SEED)
    out = []

    def add(s):
        out.append(s.encode("utf-8", "surrogatepass")
                   if isinstance(s, str) else s)

    # Plain and edge inputs.
    for s in ["", " ", "  ", "\t\n", "a", "A", "hello world",
              "a photo of a cat", "A photo of a dog.", "Hello, World!",
              "HELLO WORLD", "hElLo WoRlD", "x" * 200, "ab" * 100,
              "the " * 100, "\x00", "a\x00b", "\x00\x00\x00", "\x00 \x00"]:
        add(s)
    # English sentences, some long enough to be truncated.
    for i in range(500):
        add(english_sentence(rng, rng.randrange(1, 25)))
    for i in range(40):
        add(" ".join(english_sentence(rng, rng.randrange(5, 20))
                     for _ in range(rng.randrange(3, 12))))
    # Punctuation runs.
    for i in range(120):
        add("".join(rng.choice(PUNCT) for _ in range(rng.randrange(1, 12))))
    for i in range(60):
        add(" ".join(rng.choice(WORDS) + "".join(
            rng.choice(PUNCT) for _ in range(rng.randrange(0, 4)))
            for _ in range(rng.randrange(1, 8))))
    # Numbers: every digit is a token of its own.
    for s in ["0", "7", "42", "1234567890", "3.14159", "1,000,000",
              "12th", "2nd 3rd 4th", "v1.2.3", "+1 (555) 123-4567",
              "2024-06-11", "100%", "$9.99", "1e10", "0x1F", "٣٤٥",
              "१२३", "๑๒๓", "１２３", "Ⅻ", "½", "²", "①", "𝟙𝟚", "〇",
              "a1b2c3", "1a2b3c", "99 bottles", "007"]:
        add(s)
    for i in range(80):
        add(str(rng.randrange(0, 10 ** rng.randrange(1, 30))))
    # Contractions, in any case.
    for s in ["it's", "IT'S", "It'S", "don't", "DON'T", "we're", "WE'RE",
              "they've", "THEY'VE", "I'm", "I'M", "you'll", "YOU'LL",
              "she'd", "SHE'D", "'s", "'S", "'t", "'re", "'ve", "'m",
              "'ll", "'LL", "'d", "'D", "''s", "'''", "it’s", "rock'n'roll",
              "o'clock", "'sup", "'tis", "'twas", "y'all'd've",
              "cats' toys", "the dog's bone", "'s'", "'ss", "'lll",
              "!'s", "?'ll", "'s!", "1's", "'1", "'Ｓ", "'ſ", "'K"]:
        add(s)
    for i in range(60):
        w = rng.choice(WORDS)
        c = rng.choice(["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"])
        if rng.random() < 0.5:
            c = c.upper()
        add(w + c + " " + rng.choice(WORDS))
    # Mixed case.
    for i in range(60):
        add("".join(ch.upper() if rng.random() < 0.5 else ch
                    for ch in english_sentence(rng, rng.randrange(1, 8))))
    # Accents, composed and decomposed; NFC across marks.
    import unicodedata
    for s in ["café", "naïve", "résumé", "Ångström", "Zoë", "façade",
              "jalapeño", "Øresund", "Crème Brûlée", "ŻÓŁĆ", "Ελλάδα"]:
        add(s)
        add(unicodedata.normalize("NFD", s))
        add(unicodedata.normalize("NFKD", s))
    for i in range(120):
        base = rng.choice("aeiouAEIOUnNcCsSzZ\u1100\uac00\u0915\u0e01")
        add(base + "".join(rng.choice(COMBINING)
                           for _ in range(rng.randrange(1, 5))) +
            rng.choice(["", "b", " x", "\u0301"]))
    for s in ["\u1100\u1161", "\u1100\u1161\u11a8", "\uac00\u11a8",
              "\u212b", "\u2126", "\u212a", "\u1e9b\u0323", "\u0344",
              "\u0958", "\ufb2c", "\U0001d15e", "\U0002f800",
              "\U00011935\U00011930", "\U00011938", "a\u0301\u07fd\u0334",
              "\uac8c\u11a7", "\u1100\u1161\u11a7", "\uac00\u11a7\u11a8",
              "\uac00\u11a8", "\u1100\u1161\u11a8\u11a7",
              "e\u0334\u1abf\u0301", "\u0130\u0301", "I\u0307",
              "\u0345\u0301a", "\u0301", "\u0301\u0301abc"]:
        add(s)
    # Emoji.
    for e in EMOJI:
        add(e)
        add("I " + e + " it")
    for i in range(60):
        add("".join(rng.choice(EMOJI) for _ in range(rng.randrange(1, 6))))
    # Scripts.
    for s in SCRIPTS:
        add(s)
        add(s.upper())
    for i in range(60):
        add(" ".join(rng.choice(SCRIPTS) for _ in range(rng.randrange(2, 5))))
    # Whitespace.
    for w in WHITESPACE:
        add("a" + w + "b")
        add(w)
        add(w + "word" + w)
        add("1" + w + "2")
    for i in range(60):
        add("".join(rng.choice(WHITESPACE + ["x", "y", "!", "1"])
                    for _ in range(rng.randrange(1, 20))))
    # Control characters.
    for c in list(range(0, 0x20)) + [0x7f] + list(range(0x80, 0xa0)):
        add("a" + chr(c) + "b")
    for i in range(20):
        add("".join(chr(rng.randrange(0, 0x20)) + rng.choice(WORDS)
                    for _ in range(rng.randrange(1, 5))))
    # Invalid UTF-8 (the reference sees the "replace" decoding).
    for b in [b"\x80", b"\xbf", b"\xc0\x80", b"\xc1\xbf", b"\xc2",
              b"\xc2\x41", b"\xe0\x80\x80", b"\xe0\xa0", b"\xe2\x82",
              b"\xe2\x82\x41", b"\xed\xa0\x80", b"\xed\xbf\xbf",
              b"\xef\xbf\xbe", b"\xf0\x80\x80\x80", b"\xf0\x90\x80",
              b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80", b"\xf8\x88\x80\x80\x80",
              b"\xfe", b"\xff", b"\xff\xfe\xfd", b"abc\xffdef",
              b"caf\xe9", b"\xe9t\xe9", b"na\xefve", b"\xc3\x28",
              b"\xa0\xa1", b"\xe2\x28\xa1", b"\xf0\x28\x8c\xbc",
              b"\xf0\x9f\x98", b"\xf0\x9f\x98\x80\xf0\x9f",
              b"<|endoftext|>\xff", b"\xff<|endoftext|>",
              b"<|endof\xfftext|>", b"\xed\xa0\x80\xed\xb0\x80"]:
        add(b)
    for i in range(150):
        s = bytearray(random_unicode(rng, rng.randrange(1, 12)).encode(
            "utf-8", "surrogatepass"))
        for _ in range(rng.randrange(1, 4)):
            s.insert(rng.randrange(0, len(s) + 1), rng.randrange(0x80, 0x100))
        add(bytes(s))
    # Long inputs.
    for i in range(30):
        add(" ".join(english_sentence(rng, 20) for _ in range(15)))
    add("a" * 5000)
    add("ab " * 2000)
    add("1" * 300)
    add("!" * 3000)
    add("supercalifragilisticexpialidocious" * 50)
    add("猫" * 500)
    add("😀" * 300)
    # The special tokens inside text.
    for s in ["<|startoftext|>", "<|endoftext|>",
              "<|startoftext|>hello<|endoftext|>",
              "a <|endoftext|> b", "a<|endoftext|>b", "<|endoftext|>!!",
              "!!<|endoftext|>", "<|<|endoftext|>|>", "<|endoftext",
              "endoftext|>", "<|endoftext|><|endoftext|>",
              "<|ENDOFTEXT|>", "<|EndOfText|>!", "<|STARTOFTEXT|>",
              "<|StartOfText|>", "x<|StartOfText|>y", "<| endoftext |>",
              "<|startoftext|><|startoftext|>", "<|startoftext|>'s",
              "<|endoftext|>'S", "İ<|endoftext|>", "<|endoftext|>\u0301",
              "e<|endoftext|>\u0301", "<|startoftext|>\u0301",
              "<|endoftext|>" * 40, "<|\uff45ndoftext|>",
              "<|\u212aelvin|>", "\t<|endoftext|>\n", "<|ENDOFTEXT|>.",
              "..<|startoftext|>..", "<|startoftext|>123"]:
        add(s)
    # Random byte strings and random Unicode.
    for i in range(300):
        add(bytes(rng.randrange(256) for _ in range(rng.randrange(0, 64))))
    for i in range(300):
        add(random_unicode(rng, rng.randrange(1, 40)))
    # The characters on which utf8proc / PCRE2 and the reference differ.
    lower_exc = ([0x130, 0x1c89] + list(range(0xa7cb, 0xa7dd)) +
                 list(range(0x10d50, 0x10d66)) + list(range(0x16ea0, 0x16eb9)))
    for c in lower_exc:
        add("x" + chr(c) + "y " + chr(c))
    for c in [0x7fd, 0x898, 0x8ca, 0x9fe, 0xc3c, 0xd3b, 0xeba, 0x1715,
              0x1abf, 0x1dfa, 0xa82c, 0x10d24, 0x10eab, 0x10efd, 0x10f46,
              0x11070, 0x1133b, 0x11943, 0x16ff0, 0x1e08f, 0x1e130, 0x1e4ec]:
        add("a\u0301" + chr(c) + "\u0334b")
        add("a" + chr(c) + "\u0301\u0316")
    for c in [0x180e, 0x1c89, 0xa7cb, 0x105c0, 0x10d40, 0x10d4a, 0x11380,
              0x116d0, 0x11f02, 0x11f50, 0x13460, 0x1e4d0, 0x1e4f0, 0x31350,
              0x2ebf0, 0x1ccf0]:
        add("ab" + chr(c) + chr(c) + "1" + chr(c) + "!" + chr(c) + "cd")
    return out


# ---- SigLIP ----

SIGLIP_SPECIAL = {"lstrip": True, "normalized": False, "rstrip": True,
                  "single_word": False}
# As google/siglip-base-patch16-224 holds them (written by transformers 4).
SIGLIP_CONFIG = {
    "added_tokens_decoder": {
        "1": dict(content="</s>", special=True, **SIGLIP_SPECIAL),
        "2": dict(content="<unk>", special=True, **SIGLIP_SPECIAL),
    },
    "additional_special_tokens": [],
    "clean_up_tokenization_spaces": True,
    "do_lower_case": True,
    "eos_token": "</s>",
    "model_input_names": ["input_ids"],
    "model_max_length": 64,
    "pad_token": "</s>",
    "processor_class": "SiglipProcessor",
    "sp_model_kwargs": {},
    "tokenizer_class": "SiglipTokenizer",
    "unk_token": "<unk>",
}
SIGLIP_MAP = {"eos_token": dict(content="</s>", **SIGLIP_SPECIAL),
              "pad_token": dict(content="</s>", **SIGLIP_SPECIAL),
              "unk_token": dict(content="<unk>", **SIGLIP_SPECIAL)}


def siglip_corpus():
    """English sentences, made-up words, numbers and a little of many
    scripts (so that Greek sigmas, Cyrillic, kana, ... are pieces and the
    tests see which one the normalization gave)."""
    rng = random.Random(SEED + 7)
    syl = ["ka", "lo", "mi", "ren", "tor", "ba", "zu", "qui", "ex", "ph",
           "str", "ang", "ion", "ing", "ed", "ly", "er", "ous", "ment",
           "pre", "con", "dis", "un", "re"]
    lines = [english_sentence(rng, rng.randrange(3, 20))
             for _ in range(20000)]
    lines += [" ".join("".join(rng.choice(syl)
                               for _ in range(rng.randrange(1, 4)))
                       for _ in range(rng.randrange(2, 10)))
              for _ in range(5000)]
    lines += [" ".join(str(rng.randrange(0, 10 ** rng.randrange(1, 6)))
                       for _ in range(3)) + " café naïve résumé Ångström"
              for _ in range(1000)]
    lines += [s.lower() for s in SCRIPTS for _ in range(20)]
    lines += ["σοφός ὁδός λόγος ἄνθρωπος σσ ςς"] * 50
    return "\n".join(lines) + "\n"


def train_spm(prefix, byte_fallback):
    import sentencepiece as spm
    corpus = prefix + ".txt"
    with open(corpus, "w", encoding="utf-8") as f:
        f.write(siglip_corpus())
    spm.SentencePieceTrainer.train(
        input=corpus, model_prefix=prefix, vocab_size=3000,
        model_type="unigram", character_coverage=1.0, pad_id=0, eos_id=1,
        unk_id=2, bos_id=-1, byte_fallback=byte_fallback, num_threads=1,
        normalization_rule_name="nmt_nfkc", minloglevel=2)
    os.remove(corpus)
    os.remove(prefix + ".vocab")
    # The trainer records where its input and output were (temporary
    # paths): cleared, so that the model is the same bytes every time.
    from transformers.convert_slow_tokenizer import import_protobuf
    pb2 = import_protobuf()
    with open(prefix + ".model", "rb") as f:
        proto = pb2.ModelProto.FromString(f.read())
    proto.trainer_spec.ClearField("input")
    proto.trainer_spec.ClearField("model_prefix")
    with open(prefix + ".model", "wb") as f:
        f.write(proto.SerializeToString())
    return prefix + ".model"


def write_siglip_dirs(outdir):
    """siglip/ (the hub's layout) and siglip_bf/ (save_pretrained's)."""
    import tempfile
    from transformers import SiglipTokenizer
    hub = os.path.join(outdir, "siglip")
    bf = os.path.join(outdir, "siglip_bf")
    for d in (hub, bf):
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
    with tempfile.TemporaryDirectory() as tmp:
        shutil.move(train_spm(os.path.join(tmp, "m"), False),
                    os.path.join(hub, "spiece.model"))
        shutil.move(train_spm(os.path.join(tmp, "b"), True),
                    os.path.join(tmp, "spiece.model"))
        SiglipTokenizer(os.path.join(tmp, "spiece.model")).save_pretrained(bf)
    with open(os.path.join(hub, "tokenizer_config.json"), "w") as f:
        json.dump(SIGLIP_CONFIG, f, indent=2)
    with open(os.path.join(hub, "special_tokens_map.json"), "w") as f:
        json.dump(SIGLIP_MAP, f, indent=2)
    return hub, bf


def cut_cases(end, end_x):
    """Where a truncation to 64 cuts: sentences of 60 to 70 words, the
    same a word shorter and ending in `end`, two words shorter and ending
    in `end_x`."""
    words = "the cat sat on the mat with a dog".split()
    out = []
    for n in (60, 61, 62, 63, 64, 65, 70):
        out.append(" ".join(words[i % len(words)] for i in range(n)))
        out.append(" ".join(words[i % len(words)] for i in range(n - 1))
                   + end)
        out.append(" ".join(words[i % len(words)] for i in range(n - 2))
                   + end_x)
    return out


def siglip_extra_cases():
    """Inputs for what SigLIP's pipeline does beyond CLIP's corpus."""
    out = ["", "▁", "▁▁", "a▁b", "▁hello", "hello▁", " ▁ ", "x ▁y",
           "</s>", " </s>", "</s> ", "a</s>", "a </s>", "</s>b", "a</s>b",
           "</s></s>", "<unk>", "a <unk> b", "<unk>x", "x<unk>", "<pad>",
           "</S>", "<UNK>", "hello</S>world", "▁</s>", "猫</s>", "</s>猫",
           "Hello, World!", "HELLO WORLD!!!", "it's a dog's life",
           "don't-stop", "e-mail: a@b.c", "(a) [b] {c}", "a_b_c", "#1 ~2",
           "！？，。：；", "ｆｕｌｌ ｗｉｄｔｈ！", "＜／ｓ＞", "＜unk＞", "…",
           "ﬁ ﬂ", "½ ²", "①", "Ⅻ", "™ ℃ ㎏", "ｶﾀｶﾅ", "\u3000a\u3000",
           "a\x1cb\x1dc\x1ed\x1fe", "a\x85b", "a\u200bb", "a\u2028b",
           "a\u180eb",
           "\t\n x \r\x0b\x0c", "İstanbul", "I\u0307",
           "ΣΑΣ", "ΟΔΟΣ.", "ΟΔΟΣ'", "Σ", "aΣ", "aΣb", "a.Σ", "aΣ.b",
           "ΑΣ\u0301", "aΣ\u0301 b", "ᾼΣ", "ǅΣ", "ªΣ", "ⅠΣ", "ⒶΣ",
           "a\u02b0Σ", "\U0001d400Σ", "1Σ", "ΣΣ", "Σa", "x Σ y",
           "σοφός ΣΟΦΟΣ", "ὈΔΥΣΣΕΎΣ", "a\xadΣ", "a\u0345Σ",
           "a\U0001e030Σ", "a\u0eceΣ", "a\U0001df25Σ", "\x00", "a\x00b",
           "\ufffd", "a\ufffdb"]
    # Truncation: eos at the cut, "</s>" just before it, long words.
    out += cut_cases(" </s>", " </s> x")
    out += ["a " * 70, "</s>" * 70, "<unk> " * 70, "x" * 300]
    return [s.encode("utf-8") for s in out]


def siglip_block_string(b):
    """Every code point of block b in the contexts the canonicalization
    and normalization look at: after a letter, before and after a capital
    sigma, doubled, alone between spaces."""
    return "".join("a{0}\u03a3 {0}\u03a3 a\u03a3{0}a {0}{0} ".format(chr(c))
                   for c in range(b * 256, b * 256 + 256)
                   if not 0xD800 <= c < 0xE000)


def generate_siglip(outdir):
    import transformers
    from transformers import AutoTokenizer
    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore")
    hub, bf = write_siglip_dirs(outdir)
    ref = AutoTokenizer.from_pretrained(hub)
    ref_bf = AutoTokenizer.from_pretrained(bf)
    # The hub's layout and save_pretrained's give the same ids.
    ref.save_pretrained(os.path.join(outdir, "siglip_tmp"))
    ref_saved = AutoTokenizer.from_pretrained(os.path.join(outdir,
                                                           "siglip_tmp"))
    shutil.rmtree(os.path.join(outdir, "siglip_tmp"))
    assert type(ref).__name__ == "SiglipTokenizer", type(ref)

    def enc(tok, s, max_length=None):
        if max_length is None:
            return tok(s)["input_ids"]
        return tok(s, padding="max_length", truncation=True,
                   max_length=max_length)["input_ids"]

    cases, trunc = [], []
    rng = random.Random(SEED + 2)
    for b in siglip_extra_cases() + build_cases():
        s = b.decode("utf-8", "replace")
        full = enc(ref, s)
        assert enc(ref_saved, s) == full, s
        cases.append([b.hex(), enc(ref, s, 64), full])
        if rng.random() < 0.05:
            ml = rng.randrange(1, 12)
            trunc.append([b.hex(), ml, enc(ref, s, ml)])
    long = long_case(lambda s, ml=None: enc(ref, s, ml), 64)
    blocks = []
    for b in range(0x110000 // 256):
        ids = enc(ref_bf, siglip_block_string(b))
        blocks.append([len(ids), fnv_ids(ids)])
    with open(os.path.join(outdir, "siglip.json"), "w") as f:
        json.dump({"max_length": 64, "vocab_size": len(ref),
                   "eos": ref.eos_token_id, "pad": ref.pad_token_id,
                   "unk": ref.unk_token_id, "cases": cases, "trunc": trunc,
                   "long": long, "bf_blocks": blocks}, f,
                  separators=(",", ":"))
        f.write("\n")
    print("siglip fixtures: %d cases, %d truncation cases, %d blocks"
          % (len(cases), len(trunc), len(blocks)))


# ---- SigLIP 2 (Gemma's tokenizer) ----

# Gemma's pieces that are not learned: its special tokens and a few of its
# user-defined pieces (newlines, a whitespace run, HTML tags), which become
# added tokens matched on the raw text.
GEMMA_USER = ["<mask>", "<start_of_turn>", "<end_of_turn>", "\n", "\n\n",
              "\u2581\u2581", "<table>", "</table>"]
GEMMA_SPECIAL = {"lstrip": False, "normalized": False, "rstrip": False,
                 "single_word": False}
# The tokenizer_config.json of google/siglip2-*: transformers 4's
# GemmaTokenizerFast as convert_siglip2_to_hf.py makes it (no bos, eos
# appended, padding on the right, input_ids alone), saved with
# SiglipProcessor; added_tokens_decoder is filled in from tokenizer.json.
GEMMA_CONFIG = {
    "add_bos_token": False,
    "add_eos_token": True,
    "additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"],
    "bos_token": "<bos>",
    "clean_up_tokenization_spaces": False,
    "eos_token": "<eos>",
    "extra_special_tokens": {},
    "model_input_names": ["input_ids"],
    "model_max_length": 1000000000000000019884624838656,
    "pad_token": "<pad>",
    "padding_side": "right",
    "processor_class": "SiglipProcessor",
    "sp_model_kwargs": {},
    "spaces_between_special_tokens": False,
    "tokenizer_class": "GemmaTokenizer",
    "unk_token": "<unk>",
    "use_default_system_prompt": False,
}
GEMMA_MAP = {"additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"],
             "bos_token": dict(content="<bos>", **GEMMA_SPECIAL),
             "eos_token": dict(content="<eos>", **GEMMA_SPECIAL),
             "pad_token": dict(content="<pad>", **GEMMA_SPECIAL),
             "unk_token": dict(content="<unk>", **GEMMA_SPECIAL)}
# Added to the Siglip2Tokenizer fixture: tokens matched on normalized
# (lowercased, spaces made "▁") text.
SIGLIP2_NORMALIZED = ["Hello World", "\u00c0B"]


def gemma_corpus():
    """SigLIP's corpus, and text in both cases (GemmaTokenizer does not
    lowercase), all the scripts and emoji as written."""
    rng = random.Random(SEED + 11)
    lines = siglip_corpus().split("\n")
    lines += [english_sentence(rng, rng.randrange(3, 20))
              for _ in range(10000)]
    lines += [s for s in SCRIPTS for _ in range(20)]
    lines += [" ".join(rng.choice(EMOJI) for _ in range(5))
              for _ in range(200)]
    return "\n".join(lines) + "\n"


def train_gemma_spm(path):
    """A SentencePiece BPE model trained as Gemma's was: byte fallback,
    digits split, no dummy prefix, whitespace kept as it is, pad 0, eos 1,
    bos 2, unk 3; rare characters left to the byte pieces."""
    import sentencepiece as spm
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        corpus = os.path.join(tmp, "corpus.txt")
        with open(corpus, "w", encoding="utf-8") as f:
            f.write(gemma_corpus())
        spm.SentencePieceTrainer.train(
            input=corpus, model_prefix=os.path.join(tmp, "g"),
            vocab_size=3500, model_type="bpe", character_coverage=0.9995,
            pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>",
            eos_piece="<eos>", bos_piece="<bos>", unk_piece="<unk>",
            byte_fallback=True, user_defined_symbols=GEMMA_USER,
            add_dummy_prefix=False, remove_extra_whitespaces=False,
            normalization_rule_name="identity", split_digits=True,
            allow_whitespace_only_pieces=True, num_threads=1, minloglevel=2)
        shutil.move(os.path.join(tmp, "g.model"), path)


def write_gemma_dirs(outdir):
    """gemma/ (google/siglip2-*'s layout: tokenizer.json as transformers 4
    wrote it, with no pre-tokenizer and eos appended by its post-processor,
    tokenizer_config.json and special_tokens_map.json as above), siglip2/
    (what transformers 5's save_pretrained writes for a Siglip2Tokenizer,
    with two normalized added tokens more) and gemma_tiny/ (a small
    tokenizer.json with no class named, a byte-fallback model missing most
    byte pieces, bos and eos around the text)."""
    import tempfile
    import transformers
    from transformers import AddedToken, AutoTokenizer, GemmaTokenizer
    hub = os.path.join(outdir, "gemma")
    s2 = os.path.join(outdir, "siglip2")
    tiny = os.path.join(outdir, "gemma_tiny")
    for d in (hub, s2, tiny):
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
    with tempfile.TemporaryDirectory() as tmp:
        train_gemma_spm(os.path.join(tmp, "tokenizer.model"))
        conv = GemmaTokenizer.from_pretrained(tmp)
        tj = json.loads(conv._tokenizer.to_str())
    for a in tj["added_tokens"]:
        a["special"] = a["content"] in ("<pad>", "<eos>", "<bos>", "<unk>",
                                        "<mask>", "<start_of_turn>",
                                        "<end_of_turn>")
    tj["pre_tokenizer"] = None
    eos = {"SpecialToken": {"id": "<eos>", "type_id": 0}}
    tj["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"Sequence": {"id": "A", "type_id": 0}}, eos],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}}, eos,
                 {"Sequence": {"id": "B", "type_id": 1}},
                 {"SpecialToken": {"id": "<eos>", "type_id": 1}}],
        "special_tokens": {"<eos>": {"id": "<eos>", "ids": [1],
                                     "tokens": ["<eos>"]}}}
    with open(os.path.join(hub, "tokenizer.json"), "w",
              encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False, separators=(",", ":"))
    cfg = dict(GEMMA_CONFIG)
    cfg["added_tokens_decoder"] = {
        str(a["id"]): {k: a[k] for k in ("content", "lstrip", "normalized",
                                         "rstrip", "single_word", "special")}
        for a in tj["added_tokens"]}
    with open(os.path.join(hub, "tokenizer_config.json"), "w",
              encoding="utf-8") as f:
        json.dump(dict(sorted(cfg.items())), f, ensure_ascii=False, indent=2)
    with open(os.path.join(hub, "special_tokens_map.json"), "w") as f:
        json.dump(GEMMA_MAP, f, indent=2)

    # Siglip2Tokenizer is what AutoTokenizer gives for model_type siglip2.
    ref = auto_tokenizer(hub, "siglip2")
    assert type(ref).__name__ == "Siglip2Tokenizer", type(ref)
    ref.add_tokens([AddedToken(s, normalized=True, special=False)
                    for s in SIGLIP2_NORMALIZED])
    ref.save_pretrained(s2)
    for name in os.listdir(s2):
        if name not in ("tokenizer.json", "tokenizer_config.json"):
            os.remove(os.path.join(s2, name))
    with open(os.path.join(s2, "tokenizer.json"), encoding="utf-8") as f:
        s2j = json.load(f)
    with open(os.path.join(s2, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(s2j, f, ensure_ascii=False, separators=(",", ":"))
    # The machine's paths, which save_pretrained records, are no part of
    # the layout.
    with open(os.path.join(s2, "tokenizer_config.json")) as f:
        s2c = json.load(f)
    for k in ("is_local", "local_files_only", "name_or_path"):
        s2c.pop(k, None)
    with open(os.path.join(s2, "tokenizer_config.json"), "w") as f:
        json.dump(s2c, f, ensure_ascii=False, indent=2)

    # The tiny one: "a", "b", "é", "▁" and two merges, the bytes of "A",
    # "é" and "☃" but not the rest; no pad token, so padding is left to
    # the caller's eos.
    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "a": 4, "b": 5,
             "\u2581": 6, "ab": 7, "\u2581a": 8, "<0xC3>": 9, "<0xA9>": 10,
             "<0x41>": 11, "<0xE2>": 12, "\u00e9": 13, "<0x98>": 14,
             "<0x83>": 15}
    special = dict(GEMMA_SPECIAL, special=True)
    tiny_json = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [dict(id=i, content=c, **special)
                         for c, i in list(vocab.items())[:4]],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Replace", "pattern": {"String": " "},
             "content": "\u2581"}]},
        "pre_tokenizer": {"type": "Split", "pattern": {"String": " "},
                          "behavior": "MergedWithPrevious", "invert": False},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<bos>", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": "<eos>", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {
                "<bos>": {"id": "<bos>", "ids": [2], "tokens": ["<bos>"]},
                "<eos>": {"id": "<eos>", "ids": [1], "tokens": ["<eos>"]}}},
        "decoder": None,
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>",
                  "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": True,
                  "byte_fallback": True, "ignore_merges": False,
                  "vocab": vocab,
                  "merges": [["a", "b"], ["\u2581", "a"]]}}
    with open(os.path.join(tiny, "tokenizer.json"), "w",
              encoding="utf-8") as f:
        json.dump(tiny_json, f, ensure_ascii=False, indent=1)
    with open(os.path.join(tiny, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "<bos>", "eos_token": "<eos>",
                   "unk_token": "<unk>", "model_max_length": 16}, f,
                  indent=2)
    return hub, s2, tiny


def auto_tokenizer(d, model_type=None, edit=None):
    """AutoTokenizer on a copy of directory d with a config.json saying
    model_type (as a model's directory has it) and tokenizer_config.json
    changed by edit."""
    import tempfile
    from transformers import AutoTokenizer
    with tempfile.TemporaryDirectory() as tmp:
        for name in os.listdir(d):
            shutil.copy(os.path.join(d, name), tmp)
        if model_type:
            with open(os.path.join(tmp, "config.json"), "w") as f:
                json.dump({"model_type": model_type}, f)
        if edit:
            path = os.path.join(tmp, "tokenizer_config.json")
            with open(path) as f:
                cfg = json.load(f)
            edit(cfg)
            with open(path, "w") as f:
                json.dump(cfg, f)
        return AutoTokenizer.from_pretrained(tmp)


def gemma_extra_cases():
    """Inputs for what Gemma's pipeline does beyond the other corpora:
    spaces made "▁" and BPE over the whole text, newlines and tags as added
    tokens, specials inside text, byte fallback, truncation at 64."""
    out = ["", " ", "  ", "   ", "    ", "\u2581", "\u2581\u2581",
           " \u2581 ", "a\u2581b", "a \u2581b", "a  b", "a   b",
           " leading", "trailing ", "<eos>", "<bos>", "<pad>", "<unk>",
           "<mask>", "<EOS>", "a<eos>b", "a <eos> b", "<eos><eos>",
           "<start_of_turn>user\nhi<end_of_turn>", "\n", "\n\n", "\n\n\n",
           "a\nb", "a\n\nb", "a \n b", "\r\n", "\t", "\tx\t", "a\t\tb",
           "<table><td>x</td></table>", "<TABLE>", "<0x41>",
           "<0x41><0xFF>", "x<unk>y", "Hello World", "HELLO WORLD",
           "hello world", "Hello  World", "hello\u2581world",
           "xHello Worldy", "\u00c0B \u00e0b \u00e0B", "\u0130stanbul",
           "A PHOTO OF A CAT", "a photo of a cat", "A Photo Of A Cat",
           "\u2603", "\U0001d11e", "\U0010ffff", "\ufffd", "\x00",
           "a\x00b", "\x7f", "\u00e9\u0301", "e\u0301"]
    out += cut_cases(" <eos>", "<eos> x")
    out += ["a " * 70, "<eos>" * 70, "\n" * 100, " " * 200, "x" * 300,
            "\u2603" * 40]
    return [s.encode("utf-8") for s in out]


def generate_gemma(outdir):
    import transformers
    from transformers import AutoTokenizer
    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore")
    hub, s2, tiny = write_gemma_dirs(outdir)
    ref = AutoTokenizer.from_pretrained(hub)
    assert type(ref).__name__ == "GemmaTokenizer", type(ref)
    # AutoTokenizer takes tokenizer_config.json's class for a SiglipModel
    # checkpoint (model_type siglip) too: the same tokenizer.
    ref_siglip = auto_tokenizer(hub, "siglip")
    assert type(ref_siglip).__name__ == "GemmaTokenizer", type(ref_siglip)
    ref_s2 = AutoTokenizer.from_pretrained(s2)
    assert type(ref_s2).__name__ == "Siglip2Tokenizer", type(ref_s2)
    ref_tiny = AutoTokenizer.from_pretrained(tiny)
    assert type(ref_tiny).__name__ == "TokenizersBackend", type(ref_tiny)
    # What SigLIP 2's model is given: no attention mask, right padding.
    assert list(ref("a cat").keys()) == ["input_ids"], ref("a cat").keys()
    assert ref.padding_side == "right" and ref_s2.padding_side == "right"
    assert ref_tiny.padding_side == "right"

    def enc(tok, s, max_length=None):
        if max_length is None:
            return tok(s)["input_ids"]
        return tok(s, padding="max_length", truncation=True,
                   max_length=max_length)["input_ids"]

    def tiny_enc(s, max_length=None):
        if max_length is None:
            return ref_tiny(s)["input_ids"]
        return ref_tiny(s, truncation=True,
                        max_length=max_length)["input_ids"]

    out = {}
    rng = random.Random(SEED + 12)
    inputs = gemma_extra_cases() + siglip_extra_cases() + build_cases()
    for name, tok in (("gemma", ref), ("siglip2", ref_s2)):
        cases, trunc = [], []
        for i, b in enumerate(inputs):
            s = b.decode("utf-8", "replace")
            full = enc(tok, s)
            if name == "gemma":
                assert enc(ref_siglip, s) == full, s
            # Siglip2Tokenizer: every third string, and all the extra ones.
            if name == "siglip2" and i >= 200 and i % 3:
                continue
            cases.append([b.hex(), enc(tok, s, 64), full])
            if rng.random() < 0.05:
                ml = rng.randrange(1, 12)
                trunc.append([b.hex(), ml, enc(tok, s, ml)])
        blocks = []
        for b in range(0x110000 // 256):
            ids = enc(tok, block_string(b))
            blocks.append([len(ids), fnv_ids(ids)])
        out[name] = {"max_length": 64, "vocab_size": len(tok),
                     "bos": tok.bos_token_id, "eos": tok.eos_token_id,
                     "pad": tok.pad_token_id, "unk": tok.unk_token_id,
                     "cases": cases, "trunc": trunc,
                     "long": long_case(lambda s, ml=None: enc(tok, s, ml), 64),
                     "blocks": blocks}
    # gemma/ with no padding_side: GemmaTokenizer's default, the left.
    ref_left = auto_tokenizer(hub, edit=lambda cfg: cfg.pop("padding_side"))
    assert ref_left.padding_side == "left"
    out["gemma"]["left"] = [
        [s.encode().hex(), enc(ref_left, s, 16)]
        for s in ["a photo of a cat", "", "x", "<eos>", "the " * 20]]
    tiny_cases = []
    for s in ["ab a", "xy\u00e9", "xAy", "\u00e9", "zz\u2603A", "\u2603",
              "x\u2603", "A", "Ab", "AAb", "a b", " a", "ab ab ab", "",
              "<eos>x<bos>", "\u00e9\u00e9x\u00e9", "xx yy", "a\u2581b",
              "\u00c3\u00a9"]:
        tiny_cases.append([s.encode().hex(), tiny_enc(s),
                           [[ml, tiny_enc(s, ml)] for ml in range(1, 6)]])
    out["tiny"] = {"vocab_size": len(ref_tiny), "bos": ref_tiny.bos_token_id,
                   "eos": ref_tiny.eos_token_id, "max_length": 16,
                   "cases": tiny_cases}
    with open(os.path.join(outdir, "gemma.json"), "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    print("gemma fixtures: %d and %d cases, %d and %d truncation cases, "
          "%d tiny cases" % (len(out["gemma"]["cases"]),
                             len(out["siglip2"]["cases"]),
                             len(out["gemma"]["trunc"]),
                             len(out["siglip2"]["trunc"]), len(tiny_cases)))


def block_string(b):
    return "".join("a{0}{0}!{0}1{0}\uac00{0}\u0301 ".format(chr(c))
                   for c in range(b * 256, b * 256 + 256)
                   if not 0xD800 <= c < 0xE000)


def fnv_ids(ids):
    h = 0xCBF29CE484222325
    for i in ids:
        for byte in int(i).to_bytes(4, "little"):
            h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


# The 1 MB input: this unit repeated and cut at 2^20 bytes.
LONG_UNIT = "A photo of a cat, sitting on the mat! 123 café ".encode() + b"\xff\xfe "


def long_case(enc, max_length):
    """The 1 MB input's recipe, its ids truncated to max_length
    ("ids<max_length>") and the count and FNV-1a of its untruncated ids,
    enc(text, max_length=None) being the reference."""
    raw = LONG_UNIT
    big = (raw * (2 ** 20 // len(raw) + 1))[:2 ** 20]
    bs = big.decode("utf-8", "replace")
    full = enc(bs)
    return {"unit_hex": raw.hex(), "bytes": len(big),
            "ids%d" % max_length: enc(bs, max_length), "n_full": len(full),
            "fnv_full": fnv_ids(full)}


def generate(outdir):
    import transformers
    from transformers import CLIPTokenizerFast
    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore")

    bpe_dir = os.path.join(outdir, "bpe")
    json_dir = os.path.join(outdir, "json")
    tiny_dir = os.path.join(outdir, "tiny")
    spec_dir = os.path.join(outdir, "specials")
    legacy_dir = os.path.join(outdir, "legacy")
    for d in (bpe_dir, json_dir, tiny_dir, spec_dir, legacy_dir):
        shutil.rmtree(d, ignore_errors=True)
    write_bpe_dir(bpe_dir)
    ref = CLIPTokenizerFast.from_pretrained(bpe_dir)
    ref.save_pretrained(json_dir)
    for name in os.listdir(json_dir):
        if name not in ("tokenizer.json", "tokenizer_config.json"):
            os.remove(os.path.join(json_dir, name))
    tj_path = os.path.join(json_dir, "tokenizer.json")
    with open(tj_path, encoding="utf-8") as f:
        tj = json.load(f)
    with open(tj_path, "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False, separators=(",", ":"))
    ref_json = CLIPTokenizerFast.from_pretrained(json_dir)
    write_tiny_dir(tiny_dir, tj)
    ref_tiny = CLIPTokenizerFast.from_pretrained(tiny_dir)
    write_tiny_dir(spec_dir, tj, SPECIALS_CONFIG)
    ref_spec = CLIPTokenizerFast.from_pretrained(spec_dir)
    write_tiny_dir(legacy_dir, tj, LEGACY_CONFIG, LEGACY_MAP)
    ref_legacy = CLIPTokenizerFast.from_pretrained(legacy_dir)
    specials = {}
    for name, r in (("specials", ref_spec), ("legacy", ref_legacy)):
        specials[name] = {"vocab_size": len(r), "bos": r.bos_token_id,
                          "eos": r.eos_token_id, "pad": r.pad_token_id,
                          "max_length": (r.model_max_length
                                         if r.model_max_length <= 2 ** 24
                                         else 0),
                          "cases": []}

    def enc(tok, s, max_length=None):
        if max_length is None:
            return tok(s)["input_ids"]
        return tok(s, truncation=True, max_length=max_length)["input_ids"]

    cases, trunc, tiny = [], [], []
    inputs = build_cases()
    rng = random.Random(SEED + 1)
    for b in inputs:
        s = b.decode("utf-8", "replace")
        full = enc(ref, s)
        t77 = enc(ref, s, 77)
        assert enc(ref_json, s) == full, s
        cases.append([b.hex(), t77, None if full == t77 else full])
        if rng.random() < 0.05:
            ml = rng.randrange(0, 12)
            trunc.append([b.hex(), ml, enc(ref, s, ml)])
        if rng.random() < 0.1:
            tiny.append([b.hex(), enc(ref_tiny, s)])
    for s in ["the cat", "hello world!!", "a photo of the dog on a mat",
              "hello!", "!!!", "wow!", "12 cats", "...", "<|endoftext|>",
              "", "THE CAT", "photo's"]:
        tiny.append([s.encode().hex(), enc(ref_tiny, s)])
    for s in ["the cat", "<|startoftext|>", "<|StartOfText|>",
              "<|endoftext|>", "<|EndOfText|>", "</s>", "</S>", "<pad>",
              "<Pad>", "<PAD>x", "<mask>", "<MASK>", "a</s>b<mask>c<pad>d",
              "x<|ENDOFTEXT|>y", "", "hello world"]:
        for name, r in (("specials", ref_spec), ("legacy", ref_legacy)):
            specials[name]["cases"].append([s.encode().hex(), enc(r, s)])

    long = long_case(lambda s, ml=None: enc(ref, s, ml), 77)

    with open(os.path.join(outdir, "cases.json"), "w") as f:
        json.dump({"max_length": 77, "cases": cases, "trunc": trunc,
                   "long": long, "tiny": tiny,
                   "specials": specials}, f,
                  separators=(",", ":"))
        f.write("\n")

    blocks = []
    for b in range(0x110000 // 256):
        ids = enc(ref, block_string(b))
        blocks.append([len(ids), fnv_ids(ids)])
    with open(os.path.join(outdir, "blocks.json"), "w") as f:
        json.dump(blocks, f, separators=(",", ":"))
        f.write("\n")
    print("text fixtures: %d cases, %d truncation cases, %d tiny cases, "
          "%d blocks" % (len(cases), len(trunc), len(tiny), len(blocks)))


if __name__ == "__main__":
    out = (sys.argv[1] if len(sys.argv) > 1 else
           os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        "fixtures", "text"))
    which = os.environ.get("TEXT_FIXTURES", "all")
    if which == "all":
        generate(out)
    if which in ("all", "siglip"):
        generate_siglip(out)
    if which in ("all", "gemma"):
        generate_gemma(out)
