#!/usr/bin/env python3
"""Full-size agreement checks, outside the test suite, with random weights
in the exact layouts of real checkpoints, run by `transformers` and by
`build/vit` on the same inputs; results must agree within 1e-4 relative
(max abs diff / max abs value):

  vit   google/vit-base-patch16-224 (768 wide, 12 layers, 12 heads,
        224x224, patch 16, 1000 classes): `vit classify --logits` on a
        pixel tensor;
  clip  openai/clip-vit-base-patch32 (vision 768 x 12, patch 32; text
        512 x 12 with the real CLIP vocabulary; projection 512): image
        embeddings of a pixel tensor and text embeddings of real strings
        through `vit embed --no-normalize`;
  clip16  openai/clip-vit-base-patch16: the same with 16-pixel patches
        (197 image tokens);
  dinov2s, dinov2b  facebook/dinov2-small and -base (384 x 12 and
        768 x 12, patch 14, positions for 518x518 resized to the 224x224
        its processor makes, layer scale): `vit embed --no-normalize`
        (the pooler output) of a pixel tensor;
  dinov2r  facebook/dinov2-with-registers-small (4 registers, the
        antialiased resize of the positions);
  deit  facebook/deit-base-distilled-patch16-224 (the distillation
        token, the mean of two heads): logits as for vit;
  siglip  google/siglip-base-patch16-224 (vision 768 x 12 with its
        attention-pooling head, no class token; text 768 x 12, 64 tokens):
        image embeddings of a pixel tensor, and text embeddings of real
        strings when the directory has a tokenizer;
  openclip  open_clip's ViT-B-32 (laion2b_s34b_b79k's architecture) as
        open_clip's hub repositories hold it (open_clip_config.json,
        open_clip_model.safetensors, the CLIP tokenizer's files), run by
        open_clip: image embeddings of a pixel tensor, text embeddings of
        real strings (open_clip's own tokenizer);
  timm  timm/vit_base_patch16_224.augreg2_in21k_ft_in1k's layout
        (timm's save_for_hf), run by timm: logits as for vit.

Each is run again with `--precision int8` and with `--precision bf16`,
which change numbers: for each the script prints the smallest cosine
similarity between vit's and the reference's output vectors (and, for the
classifier, how many top-1 labels agree) and asks for a cosine of at least
0.999.

    pip install torch transformers safetensors numpy [open_clip_torch timm]
    make && python3 bench/fullsize.py [vit|clip|all] [--cache DIR]

The checkpoint is made once into the cache directory (default
~/.cache/vit-bench) and reused; it is never committed.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch
from transformers import (ViTConfig, ViTForImageClassification,
                          ViTImageProcessorPil)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def vit_b16(cache):
    path = os.path.join(cache, "vit-base-patch16-224-random")
    if not os.path.exists(os.path.join(path, "model.safetensors")):
        torch.manual_seed(0)
        cfg = ViTConfig(hidden_size=768, num_hidden_layers=12,
                        num_attention_heads=12, intermediate_size=3072,
                        image_size=224, patch_size=16, num_labels=1000,
                        id2label={i: f"class {i}" for i in range(1000)},
                        label2id={f"class {i}": i for i in range(1000)})
        model = ViTForImageClassification(cfg).eval()
        # Layernorm gains and biases away from 1 and 0, and a classifier
        # of a realistic scale, so every tensor matters to the logits.
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "layernorm" in name:
                    p.add_(0.1 * torch.randn_like(p))
            model.classifier.weight.normal_(0, 0.2)
        model.save_pretrained(path)
        ViTImageProcessorPil(size={"height": 224, "width": 224}).save_pretrained(path)
    return path


def clip_b32(cache, patch=32):
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    import gen_fixtures_text
    path = os.path.join(cache, f"clip-vit-base-patch{patch}-random")
    if not os.path.exists(os.path.join(path, "model.safetensors")):
        torch.manual_seed(0)
        cfg = CLIPConfig(
            text_config=dict(hidden_size=512, intermediate_size=2048,
                             num_hidden_layers=12, num_attention_heads=8,
                             max_position_embeddings=77, eos_token_id=2,
                             bos_token_id=49406, pad_token_id=1),
            vision_config=dict(hidden_size=768, intermediate_size=3072,
                               num_hidden_layers=12, num_attention_heads=12,
                               image_size=224, patch_size=patch),
            projection_dim=512)
        model = CLIPModel(cfg).eval()
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "norm" in name:
                    p.add_(0.1 * torch.randn_like(p))
        model.save_pretrained(path)
        CLIPImageProcessorPil().save_pretrained(path)
        gen_fixtures_text.write_bpe_dir(path)
    return path


def dinov2(cache, size, registers=False):
    """A DINOv2 checkpoint as facebook/dinov2-{small,base} (or the
    with-registers one) is laid out, with its processor."""
    from transformers import (BitImageProcessorPil, Dinov2Config,
                              Dinov2Model, Dinov2WithRegistersConfig,
                              Dinov2WithRegistersModel)
    d, h = {"small": (384, 6), "base": (768, 12)}[size]
    name = f"dinov2-{'with-registers-' if registers else ''}{size}-random"
    path = os.path.join(cache, name)
    if not os.path.exists(os.path.join(path, "model.safetensors")):
        torch.manual_seed(0)
        kw = dict(hidden_size=d, num_hidden_layers=12, num_attention_heads=h,
                  mlp_ratio=4, image_size=518, patch_size=14,
                  layerscale_value=1.0)
        model = (Dinov2WithRegistersModel(Dinov2WithRegistersConfig(
            num_register_tokens=4, **kw)) if registers
                 else Dinov2Model(Dinov2Config(**kw))).eval()
        with torch.no_grad():
            for pname, p in model.named_parameters():
                if "norm" in pname or "lambda1" in pname:
                    p.add_(0.1 * torch.randn_like(p))
                if "position_embeddings" in pname:
                    p.normal_(0, 0.5)
        model.save_pretrained(path)
        BitImageProcessorPil(size={"shortest_edge": 256},
                             crop_size={"height": 224, "width": 224},
                             image_mean=[0.485, 0.456, 0.406],
                             image_std=[0.229, 0.224, 0.225]
                             ).save_pretrained(path)
    return path


def deit_b16(cache):
    from transformers import (DeiTConfig,
                              DeiTForImageClassificationWithTeacher,
                              DeiTImageProcessorPil)
    path = os.path.join(cache, "deit-base-distilled-patch16-224-random")
    if not os.path.exists(os.path.join(path, "model.safetensors")):
        torch.manual_seed(0)
        cfg = DeiTConfig(hidden_size=768, num_hidden_layers=12,
                         num_attention_heads=12, intermediate_size=3072,
                         image_size=224, patch_size=16, num_labels=1000)
        model = DeiTForImageClassificationWithTeacher(cfg).eval()
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "layernorm" in name:
                    p.add_(0.1 * torch.randn_like(p))
            model.cls_classifier.weight.normal_(0, 0.2)
            model.distillation_classifier.weight.normal_(0, 0.2)
        model.save_pretrained(path)
        DeiTImageProcessorPil().save_pretrained(path)
    return path


def siglip_b16(cache):
    from transformers import SiglipConfig, SiglipImageProcessorPil, SiglipModel
    path = os.path.join(cache, "siglip-base-patch16-224-random")
    if not os.path.exists(os.path.join(path, "model.safetensors")):
        torch.manual_seed(0)
        model = SiglipModel(SiglipConfig(
            text_config=dict(vocab_size=32000, max_position_embeddings=64,
                             pad_token_id=1, eos_token_id=1),
            vision_config=dict(image_size=224, patch_size=16))).eval()
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "norm" in name:
                    p.add_(0.1 * torch.randn_like(p))
            model.vision_model.head.probe.normal_(0, 1)
        model.save_pretrained(path)
        SiglipImageProcessorPil().save_pretrained(path)
    # The tests' small SentencePiece tokenizer, in the hub's layout (its
    # ids are a corner of the 32000).
    tok = os.path.join(ROOT, "tests", "fixtures", "text", "siglip")
    for f in os.listdir(tok):
        shutil.copy(os.path.join(tok, f), path)
    return path


def check_siglip(args):
    from transformers import AutoTokenizer, SiglipModel
    path = siglip_b16(args.cache)
    model = SiglipModel.from_pretrained(path).eval()
    tok = AutoTokenizer.from_pretrained(path)
    texts = ["a photo of a cat", "A diagram of a Transformer!", "",
             "Ünïcödé, Ελληνικά and 日本語",
             " ".join(["a caption long enough to be truncated"] * 15)]
    g = torch.Generator().manual_seed(1)
    pixels = torch.randn((args.images, 3, 224, 224), generator=g)
    with torch.no_grad():
        ref = model.get_image_features(pixel_values=pixels).pooler_output
        ref_t = model.get_text_features(**tok(
            texts, padding="max_length", max_length=64, truncation=True,
            return_tensors="pt")).pooler_output.numpy()
    return check_pairs(args, "SigLIP B/16", path, pixels, texts,
                       ref.numpy(), ref_t)


def check_dinov2(args, size, registers=False):
    from transformers import AutoModel
    path = dinov2(args.cache, size, registers)
    model = AutoModel.from_pretrained(path).eval()
    g = torch.Generator().manual_seed(1)
    pixels = torch.randn((args.images, 3, 224, 224), generator=g)
    with torch.no_grad():
        ref = model(pixel_values=pixels).pooler_output.numpy()

    def embed(precision):
        return vit_on_pixels(args, path, pixels, precision, "embed",
                             "embedding")

    got = embed("fp32")
    r = rel(got, ref)
    print(f"DINOv2-{size}{' with registers' if registers else ''} random "
          f"weights, {args.images} images at 224 (positions for 518): "
          f"embeddings relative {r:.3g}")
    ok = r < 1e-4
    for prec in ("int8", "bf16"):
        c = min_cosine(embed(prec), ref)
        print(f"  {prec}: cosine to the reference at least {c:.6f}")
        ok = ok and c >= MIN_COSINE
    return 0 if ok else 1


def openclip_b32(cache):
    """open_clip's ViT-B-32 with random weights (its own init, the
    layernorms moved off 1 and 0), saved as open_clip's hub repositories
    are."""
    import open_clip
    from safetensors.torch import save_file
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    import gen_fixtures_text
    path = os.path.join(cache, "openclip-vit-b-32-random")
    if not os.path.exists(os.path.join(path, "open_clip_model.safetensors")):
        torch.manual_seed(0)
        model = open_clip.create_model("ViT-B-32", pretrained=None).eval()
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "ln" in name:
                    p.add_(0.1 * torch.randn_like(p))
        os.makedirs(path, exist_ok=True)
        pre = {"mean": list(open_clip.OPENAI_DATASET_MEAN),
               "std": list(open_clip.OPENAI_DATASET_STD),
               "interpolation": "bicubic", "resize_mode": "shortest"}
        with open(os.path.join(path, "open_clip_config.json"), "w") as f:
            json.dump({"model_cfg": open_clip.get_model_config("ViT-B-32"),
                       "preprocess_cfg": pre}, f, indent=2)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()},
                  os.path.join(path, "open_clip_model.safetensors"))
        gen_fixtures_text.write_bpe_dir(path)
    return path


def check_openclip(args):
    import open_clip
    path = openclip_b32(args.cache)
    model = open_clip.create_model("local-dir:" + path).eval()
    tok = open_clip.get_tokenizer("local-dir:" + path)
    texts = ["a photo of a cat", "A diagram of a Transformer&amp;co", "",
             "Ünïcödé, emoji 🐈 and 日本語", "the cat\u2019s toy",
             " ".join(["a caption long enough to be truncated"] * 15)]
    g = torch.Generator().manual_seed(1)
    pixels = torch.randn((args.images, 3, 224, 224), generator=g)
    with torch.no_grad():
        ref_i = model.encode_image(pixels).numpy()
        ref_t = model.encode_text(tok(texts)).numpy()

    return check_pairs(args, "open_clip ViT-B-32", path, pixels, texts,
                       ref_i, ref_t)


def timm_b16(cache):
    """timm's vit_base_patch16_224 with random weights (its own init, the
    norms moved off 1 and 0, a head of a realistic scale), saved by
    timm's save_for_hf as timm's hub repositories are."""
    import timm
    from timm.models._hub import save_for_hf
    path = os.path.join(cache, "timm-vit-base-patch16-224-random")
    if not os.path.exists(os.path.join(path, "model.safetensors")):
        torch.manual_seed(0)
        model = timm.create_model("vit_base_patch16_224", pretrained=False)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "norm" in name:
                    p.add_(0.1 * torch.randn_like(p))
            model.head.weight.normal_(0, 0.2)
        save_for_hf(model, path, safe_serialization=True)
    return path


def check_timm(args):
    import timm
    path = timm_b16(args.cache)
    model = timm.create_model("local-dir:" + path, pretrained=True).eval()
    g = torch.Generator().manual_seed(1)
    pixels = torch.randn((args.images, 3, 224, 224), generator=g)
    with torch.no_grad():
        ref = model(pixels).numpy()
    return check_logits(args, "timm vit_base_patch16_224", path, pixels, ref)


def rel(got, ref):
    return np.abs(got - ref).max() / np.abs(ref).max()


def min_cosine(got, ref):
    got, ref = got.astype(np.float64), ref.astype(np.float64)
    return float(((got * ref).sum(1) / np.linalg.norm(got, axis=1)
                  / np.linalg.norm(ref, axis=1)).min())


MIN_COSINE = 0.999


def run_vit(args, name, flags):
    out = subprocess.run([args.vit] + flags, check=True, capture_output=True,
                         text=True)
    return out.stdout.splitlines()


def vit_on_pixels(args, path, pixels, precision, command, key):
    """`vit COMMAND` on a pixel tensor saved as .npy: each line's `key`
    (the embedding, or the logits), as rows."""
    flags = {"embed": ["--no-normalize"],
             "classify": ["--format", "jsonl", "--logits", "--top-k", "1"]}
    with tempfile.TemporaryDirectory() as tmp:
        npy = os.path.join(tmp, "pixels.npy")
        np.save(npy, pixels.numpy())
        out = run_vit(args, command, [command, "--model", path, "--precision",
                                      precision] + flags[command] + [npy])
    return np.array([json.loads(l)[key] for l in out], np.float32)


def vit_on_texts(args, path, texts, precision):
    """`vit embed --no-normalize` of the strings, as rows."""
    flags = ["embed", "--model", path, "--precision", precision,
             "--no-normalize"]
    for t in texts:
        flags += ["--text", t]
    out = run_vit(args, "text", flags)
    return np.array([json.loads(l)["embedding"] for l in out], np.float32)


def check_clip(args, patch=32):
    from transformers import CLIPModel, CLIPTokenizerFast
    path = clip_b32(args.cache, patch)
    model = CLIPModel.from_pretrained(path).eval()
    tok = CLIPTokenizerFast.from_pretrained(path)
    texts = ["a photo of a cat", "a diagram of a transformer", "",
             "Ünïcödé, emoji 🐈 and 日本語",
             " ".join(["a caption long enough to be truncated"] * 15)]
    g = torch.Generator().manual_seed(1)
    pixels = torch.randn((args.images, 3, 224, 224), generator=g)
    with torch.no_grad():
        t = tok(texts, padding=True, truncation=True, max_length=77,
                return_tensors="pt")
        ref_t = model.get_text_features(**t)
        ref_i = model.get_image_features(pixel_values=pixels)
    ref_t = getattr(ref_t, "pooler_output", ref_t).numpy()
    ref_i = getattr(ref_i, "pooler_output", ref_i).numpy()
    return check_pairs(args, f"CLIP ViT-B/{patch}", path, pixels, texts,
                       ref_i, ref_t)


def check_pairs(args, name, path, pixels, texts, ref_i, ref_t):
    """`vit embed` of the pixels and of the strings against the reference's
    embeddings: in fp32 within 1e-4 relative, in int8 and bf16 a cosine of
    at least MIN_COSINE."""
    def embed(precision):
        return (vit_on_pixels(args, path, pixels, precision, "embed",
                              "embedding"),
                vit_on_texts(args, path, texts, precision))

    got_i, got_t = embed("fp32")
    ri, rt = rel(got_i, ref_i), rel(got_t, ref_t)
    print(f"{name} random weights: image embeddings of {len(ref_i)} images "
          f"relative {ri:.3g}; text embeddings of {len(texts)} strings "
          f"relative {rt:.3g}")
    ok = ri < 1e-4 and rt < 1e-4
    for prec in ("int8", "bf16"):
        q_i, q_t = embed(prec)
        ci, ct = min_cosine(q_i, ref_i), min_cosine(q_t, ref_t)
        print(f"  {prec}: cosine to the reference at least {ci:.6f} "
              f"(images), {ct:.6f} (texts)")
        ok = ok and min(ci, ct) >= MIN_COSINE
    return 0 if ok else 1


def check_vit(args, deit=False):
    from transformers import DeiTForImageClassificationWithTeacher
    path = deit_b16(args.cache) if deit else vit_b16(args.cache)
    cls = (DeiTForImageClassificationWithTeacher if deit
           else ViTForImageClassification)
    model = cls.from_pretrained(path).eval()
    g = torch.Generator().manual_seed(1)
    pixels = torch.randn((args.images, 3, 224, 224), generator=g)
    with torch.no_grad():
        ref = model(pixel_values=pixels).logits.numpy()
    return check_logits(args, "DeiT-B/16 distilled" if deit else "ViT-B/16",
                        path, pixels, ref)


def check_logits(args, name, path, pixels, ref):
    """`vit classify --logits` of the pixels against the reference's
    logits: in fp32 within 1e-4 relative with the same top-1, in int8 and
    bf16 a cosine of at least MIN_COSINE."""
    def logits(precision):
        return vit_on_pixels(args, path, pixels, precision, "classify",
                             "logits")

    got = logits("fp32")
    diff = np.abs(got - ref).max()
    rel = diff / np.abs(ref).max()
    same_top1 = (got.argmax(1) == ref.argmax(1)).all()
    print(f"{name} random weights, {len(ref)} images: logits max abs "
          f"diff {diff:.3g}, max |ref| {np.abs(ref).max():.3g}, relative "
          f"{rel:.3g}; top-1 identical: {same_top1}")
    ok = rel < 1e-4 and same_top1
    for prec in ("int8", "bf16"):
        q = logits(prec)
        c = min_cosine(q, ref)
        agree = int((q.argmax(1) == ref.argmax(1)).sum())
        print(f"  {prec}: logits cosine to the reference at least {c:.6f}; "
              f"top-1 agrees on {agree} of {len(ref)}")
        ok = ok and c >= MIN_COSINE
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("which", nargs="?", default="all",
                    choices=["vit", "clip", "clip16", "dinov2s", "dinov2b",
                             "dinov2r", "deit", "siglip", "openclip", "timm",
                             "all"])
    ap.add_argument("--cache", default=os.path.expanduser("~/.cache/vit-bench"))
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--vit", default=os.path.join(ROOT, "build", "vit"))
    args = ap.parse_args()
    os.makedirs(args.cache, exist_ok=True)
    rc = 0
    if args.which in ("vit", "all"):
        rc |= check_vit(args)
    if args.which in ("clip", "all"):
        rc |= check_clip(args)
    if args.which in ("clip16", "all"):
        rc |= check_clip(args, 16)
    if args.which in ("dinov2s", "all"):
        rc |= check_dinov2(args, "small")
    if args.which in ("dinov2b", "all"):
        rc |= check_dinov2(args, "base")
    if args.which in ("dinov2r", "all"):
        rc |= check_dinov2(args, "small", registers=True)
    if args.which in ("deit", "all"):
        rc |= check_vit(args, deit=True)
    if args.which in ("siglip", "all"):
        rc |= check_siglip(args)
    if args.which in ("openclip", "all"):
        rc |= check_openclip(args)
    if args.which in ("timm", "all"):
        rc |= check_timm(args)
    return rc


if __name__ == "__main__":
    sys.exit(main())
