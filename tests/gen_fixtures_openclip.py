"""Fixtures for open_clip's CLIPs (tests/check_openclip.c, and the
end-to-end loops of tests/check_clipcli.c), made by the reference:
open_clip_torch (3.3), its models, image_transform and tokenizer.

generate() writes, under tests/fixtures/:

  openclip_b32/    a tiny ViT-B-32-like CLIP (GELU, resize_mode "shortest",
                   OpenAI's mean and std), F16 weights;
  openclip_quick/  quick_gelu (as OpenAI's weights run in open_clip), its own
                   mean and std, bilinear, BF16 weights, the text tower as
                   CustomTextCLIP keeps it (custom_text: "text." names);
  openclip_rect/   a 24x40 image tower, resize_mode "longest" (the resize that
                   fits the longer side, then the crop that pads), F32.

each as open_clip's push_to_hf_hub writes a hub repository:
open_clip_config.json ({"model_cfg", "preprocess_cfg"}, as
save_config_for_hf writes it) and open_clip_model.safetensors (the
state_dict), with the CLIP tokenizer files the hub repositories carry
(vocab.json, merges.txt, tokenizer_config.json: links to clip_tok's). And
the reference outputs, from open_clip's own preprocess and tokenizer
(SimpleTokenizer: no hf_tokenizer_name in the configs):

  ref_inputs.json            the texts, image files, match texts, labels
                             and template (the keys check_clipcli.c reads)
  ref_str_text_embeds.npy    encode_text(tokenizer(texts))
  ref_file_image_embeds.npy  encode_image(preprocess(image))
  ref_file_pixels.npy        preprocess(image), the tensors
  ref_match_logits.npy       logit_scale.exp() * cos, images x match texts
  ref_zeroshot_logits.npy    the same for the template filled with labels
  ref_pixels.npy, ref_image_embeds.npy, ref_ids.npy, ref_text_embeds.npy
                             random pixels and the tokenizer's ids (padded
                             with 0 to 77, as open_clip pads) and their
                             embeddings, for the precision checks

The images are opened as vit opens them (transformers' load_image: EXIF
orientation applied, then convert("RGB")) and handed to open_clip's
preprocess; for RGB files without an EXIF turn that is
preprocess(Image.open(path)). Besides the shared photos, two sizes whose
crop offsets are odd halves (35x32, 64x78), where torchvision's rounding
differs from a floor.

  openclip/tokens.json       open_clip's SimpleTokenizer on the text
                             suite's strings (tests/fixtures/text/
                             cases.json, from tests/gen_fixtures_text.py)
                             and ones its cleaning changes,
                             and its HFTokenizer over clip_tok's files
                             (what a config naming hf_tokenizer_name runs)
  openclip/preprocess.json   open_clip's image_transform alone for every
                             resize_mode, both interpolations, square and
                             oblong sizes, on those images:
                             {"images": [...], "cases": [{"size": [h, w],
                             "preprocess_cfg": {...}, "file": NAME}]},
                             each NAME an (images, 3, h, w) .npy
"""
import json
import os
import shutil
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures")
ROOT = os.path.dirname(HERE)

TEXTS = ["a photo of a cat", "A Photo Of A DOG!", "the number 7",
         "ünïcödé and emoji 🐈‍⬛ 日本語", "",
         "the cat\u2019s \ufb01sh &amp; \uff23\uff41\uff54\u201d",
         " ".join(["a long caption that goes on"] * 20)]
LABELS = ["cat", "dog", "seven"]
TEMPLATE = "a photo of a {}."
IMAGES = ["tests/fixtures/cli/gradient.jpg", "tests/fixtures/cli/noise.png",
          "tests/fixtures/images/exif_jpg_6.jpg",
          "tests/fixtures/cli/photo.jpg",
          "tests/fixtures/openclip/odd_35x32.png",
          "tests/fixtures/openclip/odd_64x78.jpg"]


def npy(path, name, arr):
    np.save(os.path.join(path, name), np.ascontiguousarray(arr, np.float32))


def make_images():
    from PIL import Image
    d = os.path.join(OUT, "openclip")
    os.makedirs(d, exist_ok=True)
    rng = np.random.default_rng(41)
    for name, (w, h) in [("odd_35x32.png", (35, 32)),
                         ("odd_64x78.jpg", (64, 78))]:
        y, x = np.mgrid[0:h, 0:w]
        img = np.stack([x * 255 // w, y * 255 // h, (x * y) % 256], -1)
        img = img + rng.integers(0, 40, img.shape)
        im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
        im.save(os.path.join(d, name), quality=92)


def load(path):
    from transformers.image_utils import load_image
    return load_image(os.path.join(ROOT, path))


def randomize(model, seed):
    """Random weights of a realistic scale everywhere (layernorm gains near
    1), so that a mis-loaded tensor shows; logit_scale kept."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "logit_scale":
                p.fill_(2.5)
            elif (name.endswith("weight") and "." in name and
                  name.split(".")[-2].startswith("ln")):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))


def link_tokenizer(path):
    for f in ("vocab.json", "merges.txt", "tokenizer_config.json"):
        os.symlink(os.path.join("..", "clip_tok", f), os.path.join(path, f))


def make(name, model_cfg, preprocess_cfg, dtype, seed):
    import open_clip
    from open_clip.factory import get_tokenizer
    from safetensors.torch import save_file
    path = os.path.join(OUT, name)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    with open(os.path.join(path, "open_clip_config.json"), "w") as f:
        json.dump({"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg},
                  f, indent=2)
    link_tokenizer(path)
    torch.manual_seed(seed)
    # A model built from the config alone, then weights saved and loaded
    # back through open_clip's own local-dir path, as users load them.
    model = open_clip.create_model("local-dir:" + path, load_weights=False)
    randomize(model, seed)
    sd = {k: v.to(dtype).contiguous() for k, v in model.state_dict().items()}
    save_file(sd, os.path.join(path, "open_clip_model.safetensors"))
    model, preprocess = open_clip.create_model_from_pretrained(
        "local-dir:" + path)
    model.eval()
    tok = get_tokenizer("local-dir:" + path)
    assert type(tok).__name__ == "SimpleTokenizer", type(tok)

    pil = [load(p) for p in IMAGES]
    with torch.no_grad():
        pixels = torch.stack([preprocess(im) for im in pil])
        img = model.encode_image(pixels)
        txt = model.encode_text(tok(TEXTS))

        def logits(strings):
            t = model.encode_text(tok(strings))
            a = img / img.norm(dim=-1, keepdim=True)
            b = t / t.norm(dim=-1, keepdim=True)
            return model.logit_scale.exp() * a @ b.T
        match = logits(TEXTS[:3])
        zs = logits([TEMPLATE.format(l) for l in LABELS])

        g = torch.Generator().manual_seed(seed + 1)
        h, w = model.visual.image_size
        rpx = torch.randn((3, 3, h, w), generator=g)
        ids = tok(["a photo of a cat", "two dogs on a red sofa, asleep", ""])
        rimg = model.encode_image(rpx)
        rtxt = model.encode_text(ids)
    npy(path, "ref_file_pixels.npy", pixels.numpy())
    npy(path, "ref_file_image_embeds.npy", img.numpy())
    npy(path, "ref_str_text_embeds.npy", txt.numpy())
    npy(path, "ref_match_logits.npy", match.numpy())
    npy(path, "ref_zeroshot_logits.npy", zs.numpy())
    npy(path, "ref_pixels.npy", rpx.numpy())
    npy(path, "ref_image_embeds.npy", rimg.numpy())
    npy(path, "ref_ids.npy", ids.numpy())
    npy(path, "ref_text_embeds.npy", rtxt.numpy())
    with open(os.path.join(path, "ref_inputs.json"), "w") as f:
        json.dump({"texts": TEXTS, "images": IMAGES,
                   "match_texts": TEXTS[:3], "labels": LABELS,
                   "template": TEMPLATE}, f, ensure_ascii=False, indent=1)
    print(f"{name}: {sorted(os.listdir(path))}")


def make_preprocess():
    """open_clip's image_transform on its own, every mode."""
    from open_clip.transform import PreprocessCfg, image_transform_v2
    d = os.path.join(OUT, "openclip")
    images = IMAGES
    pil = [load(p) for p in images]
    cases = []
    n = 0
    for size in ([32, 32], [24, 40], [40, 24]):
        for mode in ("shortest", "longest", "squash"):
            for interp in ("bicubic", "bilinear"):
                pp = {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3],
                      "interpolation": interp, "resize_mode": mode}
                cfg = PreprocessCfg(size=tuple(size), **pp)
                t = image_transform_v2(cfg, is_train=False)
                x = torch.stack([t(im) for im in pil])
                name = f"pp_{n}.npy"
                npy(d, name, x.numpy())
                cases.append({"size": size, "preprocess_cfg": pp,
                              "file": name})
                n += 1
    with open(os.path.join(d, "preprocess.json"), "w") as f:
        json.dump({"images": images, "cases": cases}, f, indent=1)
    print(f"openclip: {n} preprocessing cases")


EXTRA_TEXTS = [
    "the cat\u2019s toy", "\u201cquoted\u201d and \u2018single\u2019",
    "fish &amp; chips", "&lt;b&gt;bold&lt;/b&gt; <b>tag</b> &amp;",
    "&amp;amp; twice", "&ampchips &notit; &not &#65;&#x42;&#67 &#0; &#x110000;",
    "&#128; &#x80; &#1114112; &#55296; &#12; &AMP; &EACUTE;", "P&EACUTE;REZ",
    "\ufb01sh \ufb02ow \u0133", "\uff23\uff41\uff54 \u3000 wide",
    "\x1b[31mred\x1b[0m", "bell\x07 nul\x00 del\x7f", "c1 \x91x\x92 \x80",
    "line\none\r\nline two\u2028three", "<p>&amp;</p>\n&amp;",
    "  Leading and   trailing  ", "\u0130stanbul \u1e9e", "e\u0301 nfc",
    "\ufeffbom \u200bzero width",
    "caf\u00c3\u00a9 mojibake",
]


def tokenizer_cases():
    """openclip/tokens.json: open_clip's SimpleTokenizer ids for the text
    fixtures' strings and some that its cleaning changes, untruncated;
    [hex, ids as it gives them, ids with ftfy's fix_encoding (the mojibake
    repair vit does not do) off or null when the same, whether the string
    holds a code point Python's Unicode has not assigned]."""
    import ftfy
    import html
    import unicodedata
    from open_clip.tokenizer import SimpleTokenizer
    p = os.path.join(OUT, "text", "cases.json")
    strings = [bytes.fromhex(c[0]).decode("utf-8", "replace")
               for c in json.load(open(p))["cases"]] + EXTRA_TEXTS
    st = SimpleTokenizer()
    nofe = SimpleTokenizer()

    def clean(x):
        x = ftfy.fix_text(x, fix_encoding=False)
        x = html.unescape(html.unescape(x)).strip()
        return " ".join(x.split()).strip().lower()
    nofe.clean_fn = clean

    def ids(t, x):
        return [t.sot_token_id] + t.encode(x) + [t.eot_token_id]
    cases, differ = [], 0
    for x in strings:
        a, b = ids(st, x), ids(nofe, x)
        differ += a != b
        # Unassigned in Python 3.11's Unicode (14): the regex module's
        # classes and str.lower for such code points follow no version vit
        # can share (its tables follow the tokenizers library's).
        cn = any(unicodedata.category(ch) == "Cn" for ch in x)
        cases.append([x.encode("utf-8", "surrogatepass").hex(), a,
                      b if b != a else None, cn])
    # open_clip's HFTokenizer (a config with hf_tokenizer_name) over the
    # CLIP tokenizer files: [hex, its ids before the padding]; not the strings
    # ftfy's mojibake repair changes.
    from open_clip.tokenizer import HFTokenizer
    hft = HFTokenizer(os.path.join(OUT, "clip_tok"), context_length=77)
    hf_cases = []
    for x in TEXTS + EXTRA_TEXTS + ["a cat<|endoftext|>", "<|startoftext|>x"]:
        if ftfy.fix_text(x) != ftfy.fix_text(x, fix_encoding=False):
            continue
        # What hft([x]) pads (with eos, so not told apart from it there).
        ids = hft.tokenizer(hft.clean_fn(x), max_length=77,
                            truncation=True)["input_ids"]
        row = hft([x])[0].tolist()
        assert row[:len(ids)] == ids, x
        hf_cases.append([x.encode("utf-8").hex(), ids])
    with open(os.path.join(OUT, "openclip", "tokens.json"), "w") as f:
        json.dump({"cases": cases, "hf": hf_cases}, f)
    print(f"openclip/tokens.json: {len(cases)} strings, {differ} of them "
          f"changed by ftfy's fix_encoding")


def generate():
    import open_clip
    make_images()
    vision = {"image_size": 32, "layers": 2, "width": 48, "head_width": 8,
              "patch_size": 8}
    text = {"context_length": 77, "vocab_size": 49408, "width": 32,
            "heads": 4, "layers": 2}
    make("openclip_b32",
         {"embed_dim": 24, "vision_cfg": vision, "text_cfg": text},
         {"mean": list(open_clip.OPENAI_DATASET_MEAN),
          "std": list(open_clip.OPENAI_DATASET_STD)},
         torch.float16, seed=51)
    make("openclip_quick",
         {"embed_dim": 16, "quick_gelu": True, "custom_text": True,
          "vision_cfg": dict(vision, mlp_ratio=2.0),
          "text_cfg": dict(text, width=16, heads=2, mlp_ratio=3.0)},
         {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
          "interpolation": "bilinear", "resize_mode": "shortest"},
         torch.bfloat16, seed=52)
    make("openclip_rect",
         {"embed_dim": 16,
          "vision_cfg": dict(vision, image_size=[24, 40]),
          "text_cfg": dict(text, width=8, heads=2)},
         {"mean": list(open_clip.OPENAI_DATASET_MEAN),
          "std": list(open_clip.OPENAI_DATASET_STD),
          "interpolation": "bicubic", "resize_mode": "longest"},
         torch.float32, seed=53)
    make_preprocess()
    tokenizer_cases()


if __name__ == "__main__":
    sys.exit(generate())
